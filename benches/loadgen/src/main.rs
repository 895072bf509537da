//! An open-loop HTTP/1.1 load generator for tenantgate's end-to-end benchmarks.
//!
//! wrk measures at saturation: each connection sends its next request when the previous one
//! answered, so a stalled server is asked less and its stall hides in few samples (coordinated
//! omission). Here each connection sends on a fixed schedule (offered rate / connections apart)
//! and a request's latency runs from the moment it *should* have been sent, as wrk2 does, so
//! queueing behind a slow answer counts. With `--rate 0` it runs closed-loop (saturation).
//!
//! One thread per keep-alive connection, blocking I/O: simple, and at the few thousand requests
//! per second a 2-core machine serves, the generator is not the bottleneck (wrk's numbers at
//! saturation and ours agree within a few per cent). Prints one JSON object on stdout.

mod args;
mod http;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::args::Args;
use crate::http::{Connection, RequestTemplate};

struct Outcome {
    latencies: Histogram<u64>,
    requests: u64,
    non_2xx: u64,
    errors: u64,
}

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("tenantgate-loadgen: {message}\n\n{}", args::USAGE);
            std::process::exit(2);
        }
    };
    let template = Arc::new(RequestTemplate::new(&args));
    let next_path = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let start = Instant::now() + Duration::from_millis(50);
    let warmup = Duration::from_secs_f64(args.warmup_seconds);
    let end = start + warmup + Duration::from_secs_f64(args.duration_seconds);
    let workers: Vec<_> = (0..args.connections)
        .map(|index| {
            let template = Arc::clone(&template);
            let next_path = Arc::clone(&next_path);
            let failed = Arc::clone(&failed);
            let schedule = args.schedule(index);
            thread::spawn(move || {
                run_connection(&template, &next_path, &failed, schedule, start, warmup, end)
            })
        })
        .collect();
    let mut total = Outcome {
        latencies: new_histogram(),
        requests: 0,
        non_2xx: 0,
        errors: 0,
    };
    for worker in workers {
        let outcome = worker.join().expect("a connection thread panicked");
        total
            .latencies
            .add(&outcome.latencies)
            .expect("same histogram bounds");
        total.requests += outcome.requests;
        total.non_2xx += outcome.non_2xx;
        total.errors += outcome.errors;
    }
    let report = report_json(&args, &total);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{report}").expect("stdout");
}

fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s, 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// When a connection sends its requests: every `interval`, from `offset` after the start.
#[derive(Clone, Copy)]
pub struct Schedule {
    pub offset: Duration,
    pub interval: Option<Duration>,
}

fn run_connection(
    template: &RequestTemplate,
    next_path: &AtomicUsize,
    failed: &AtomicBool,
    schedule: Schedule,
    start: Instant,
    warmup: Duration,
    end: Instant,
) -> Outcome {
    let mut outcome = Outcome {
        latencies: new_histogram(),
        requests: 0,
        non_2xx: 0,
        errors: 0,
    };
    let mut connection: Option<Connection> = None;
    let mut intended = start + schedule.offset;
    loop {
        if schedule.interval.is_some() {
            let now = Instant::now();
            if intended > now {
                thread::sleep(intended - now);
            }
        } else {
            intended = Instant::now();
        }
        if intended >= end || failed.load(Ordering::Relaxed) {
            break;
        }
        let path_index = next_path.fetch_add(1, Ordering::Relaxed);
        let sent = match connection.as_mut() {
            Some(open) => open.exchange(template, path_index),
            None => match Connection::open(template) {
                Ok(opened) => connection.insert(opened).exchange(template, path_index),
                Err(error) => Err(error),
            },
        };
        let done = Instant::now();
        let measured = intended >= start + warmup;
        match sent {
            Ok(answer) => {
                if answer.close {
                    connection = None;
                }
                if measured {
                    outcome.requests += 1;
                    if !(200..300).contains(&answer.status) {
                        outcome.non_2xx += 1;
                    }
                    let micros = u64::try_from((done - intended).as_micros()).unwrap_or(u64::MAX);
                    outcome.latencies.saturating_record(micros.max(1));
                }
            }
            Err(_) => {
                connection = None;
                if measured {
                    outcome.errors += 1;
                }
                if outcome.errors > 1_000 {
                    failed.store(true, Ordering::Relaxed);
                }
            }
        }
        if let Some(interval) = schedule.interval {
            intended += interval;
        }
    }
    outcome
}

fn report_json(args: &Args, total: &Outcome) -> String {
    let latencies = &total.latencies;
    let quantile = |q: f64| latencies.value_at_quantile(q);
    let throughput = total.requests as f64 / args.duration_seconds;
    format!(
        concat!(
            "{{\"mode\":\"{}\",\"offered_rate\":{},\"connections\":{},\"duration_seconds\":{},",
            "\"requests\":{},\"non_2xx\":{},\"errors\":{},\"throughput\":{:.1},",
            "\"latency_us\":{{\"p50\":{},\"p90\":{},\"p99\":{},\"p999\":{},\"max\":{},",
            "\"mean\":{:.1}}}}}"
        ),
        if args.rate > 0.0 { "open" } else { "closed" },
        args.rate,
        args.connections,
        args.duration_seconds,
        total.requests,
        total.non_2xx,
        total.errors,
        throughput,
        quantile(0.50),
        quantile(0.90),
        quantile(0.99),
        quantile(0.999),
        latencies.max(),
        latencies.mean(),
    )
}
