//! Just enough HTTP/1.1 for a keep-alive client: a fixed request, and answers framed by
//! `Content-Length` or chunked transfer coding.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use crate::args::Args;

pub struct RequestTemplate {
    address: (String, u16),
    paths: Vec<String>,
    head_before_path: String,
    head_after_path: String,
    body: Vec<u8>,
}

impl RequestTemplate {
    pub fn new(args: &Args) -> Self {
        let body = args.body.clone().unwrap_or_default().into_bytes();
        let mut after = format!(" HTTP/1.1\r\nHost: {}:{}\r\n", args.host, args.port);
        for header in &args.headers {
            after.push_str(header);
            after.push_str("\r\n");
        }
        if args.body.is_some() {
            after.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        after.push_str("\r\n");
        RequestTemplate {
            address: (args.host.clone(), args.port),
            paths: args.paths.clone(),
            head_before_path: format!("{} ", args.method),
            head_after_path: after,
            body,
        }
    }

    fn write_to(&self, path_index: usize, buffer: &mut Vec<u8>) {
        buffer.clear();
        buffer.extend_from_slice(self.head_before_path.as_bytes());
        buffer.extend_from_slice(self.paths[path_index % self.paths.len()].as_bytes());
        buffer.extend_from_slice(self.head_after_path.as_bytes());
        buffer.extend_from_slice(&self.body);
    }
}

pub struct Answer {
    pub status: u16,
    pub close: bool,
}

pub struct Connection {
    reader: BufReader<TcpStream>,
    request: Vec<u8>,
    line: String,
    sink: Vec<u8>,
}

impl Connection {
    pub fn open(template: &RequestTemplate) -> io::Result<Self> {
        let stream = TcpStream::connect((template.address.0.as_str(), template.address.1))?;
        stream.set_nodelay(true)?;
        Ok(Connection {
            reader: BufReader::with_capacity(64 * 1024, stream),
            request: Vec::with_capacity(1024),
            line: String::with_capacity(256),
            sink: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends one request and reads its whole answer.
    pub fn exchange(
        &mut self,
        template: &RequestTemplate,
        path_index: usize,
    ) -> io::Result<Answer> {
        template.write_to(path_index, &mut self.request);
        self.reader.get_mut().write_all(&self.request)?;
        self.read_line()?;
        let status = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| invalid("no status line"))?;
        let mut length = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            self.read_line()?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid("malformed header"));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<u64>().map_err(|_| invalid("bad length"))?);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if chunked {
            self.read_chunks()?;
        } else {
            self.skip(length.unwrap_or(0))?;
        }
        Ok(Answer { status, close })
    }

    fn read_line(&mut self) -> io::Result<()> {
        self.line.clear();
        if self.reader.read_line(&mut self.line)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed"));
        }
        Ok(())
    }

    fn skip(&mut self, length: u64) -> io::Result<()> {
        self.sink.clear();
        let read = (&mut self.reader)
            .take(length)
            .read_to_end(&mut self.sink)?;
        if read as u64 != length {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "short body"));
        }
        Ok(())
    }

    fn read_chunks(&mut self) -> io::Result<()> {
        loop {
            self.read_line()?;
            let size_text = self.line.trim_end().split(';').next().unwrap_or("");
            let size = u64::from_str_radix(size_text, 16).map_err(|_| invalid("bad chunk"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    self.read_line()?;
                    if self.line.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            self.skip(size + 2)?;
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}
