//! The command line.

use std::time::Duration;

use crate::Schedule;

pub const USAGE: &str =
    "usage: tenantgate-loadgen --url http://HOST:PORT [--path /p | --paths-file F]
    [--method GET] [--body TEXT] [-H 'Name: value']... [--connections 32]
    [--duration 10] [--warmup 1] [--rate REQUESTS_PER_SECOND (0: closed loop)]";

pub struct Args {
    pub host: String,
    pub port: u16,
    pub paths: Vec<String>,
    pub method: String,
    pub body: Option<String>,
    pub headers: Vec<String>,
    pub connections: usize,
    pub duration_seconds: f64,
    pub warmup_seconds: f64,
    pub rate: f64,
}

impl Args {
    pub fn parse(mut words: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut url = None;
        let mut path = None;
        let mut paths_file = None;
        let mut parsed = Args {
            host: String::new(),
            port: 80,
            paths: Vec::new(),
            method: "GET".to_owned(),
            body: None,
            headers: Vec::new(),
            connections: 32,
            duration_seconds: 10.0,
            warmup_seconds: 1.0,
            rate: 0.0,
        };
        while let Some(word) = words.next() {
            let mut value = || words.next().ok_or_else(|| format!("{word} needs a value"));
            match word.as_str() {
                "--url" => url = Some(value()?),
                "--path" => path = Some(value()?),
                "--paths-file" => paths_file = Some(value()?),
                "--method" => parsed.method = value()?,
                "--body" => parsed.body = Some(value()?),
                "-H" | "--header" => parsed.headers.push(value()?),
                "--connections" | "-c" => parsed.connections = number(&value()?)?,
                "--duration" | "-d" => parsed.duration_seconds = number(&value()?)?,
                "--warmup" => parsed.warmup_seconds = number(&value()?)?,
                "--rate" | "-R" => parsed.rate = number(&value()?)?,
                other => return Err(format!("unknown argument {other}")),
            }
        }
        let url = url.ok_or("--url is required")?;
        let authority = url
            .strip_prefix("http://")
            .ok_or("only http:// URLs are supported")?
            .trim_end_matches('/');
        let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
        parsed.host = host.to_owned();
        parsed.port = number(port)?;
        parsed.paths = match (path, paths_file) {
            (Some(path), None) => vec![path],
            (None, Some(file)) => std::fs::read_to_string(&file)
                .map_err(|error| format!("{file}: {error}"))?
                .lines()
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => return Err("give exactly one of --path and --paths-file".to_owned()),
        };
        if parsed.paths.is_empty() {
            return Err("no paths to request".to_owned());
        }
        if parsed.connections == 0 || parsed.duration_seconds <= 0.0 || parsed.rate < 0.0 {
            return Err("connections and duration must be positive, rate not negative".to_owned());
        }
        Ok(parsed)
    }

    /// Connection `index` of `connections` sends every `connections / rate` seconds, the
    /// connections staggered evenly so the offered load is smooth; closed loop has no schedule.
    pub fn schedule(&self, index: usize) -> Schedule {
        if self.rate <= 0.0 {
            return Schedule {
                offset: Duration::ZERO,
                interval: None,
            };
        }
        let interval = self.connections as f64 / self.rate;
        Schedule {
            offset: Duration::from_secs_f64(interval * index as f64 / self.connections as f64),
            interval: Some(Duration::from_secs_f64(interval)),
        }
    }
}

fn number<T: std::str::FromStr>(text: &str) -> Result<T, String> {
    text.parse().map_err(|_| format!("not a number: {text}"))
}
