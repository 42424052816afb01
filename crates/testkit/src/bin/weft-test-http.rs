//! `weft-test-http`: a tiny HTTP/1.1 server for scenario tests (std only, one thread per
//! connection, keep-alive).
//!
//! Every request gets `200 OK` (or `NNN` for a path starting with `/status/NNN`, or for every
//! other path the `--status NNN` the server was started with; `503` for the first N requests
//! with `--fail-first N`) with a `text/plain` body of `key=value` lines naming the server and
//! the request:
//!
//! ```text
//! server=NAME
//! method=GET
//! path=/the/path?query
//! header.x-echoed=value      (one line per --echo-header present in the request)
//! ```
//!
//! The response also carries an `x-weft-server: NAME` header. With `--delay MS` every response
//! is sent that many milliseconds after its request was read. Each request is logged to stdout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::exit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

const USAGE: &str = "usage: weft-test-http --listen ADDR:PORT [--listen ...] [--name NAME] \
                     [--echo-header HEADER ...] [--status NNN] [--delay MS] [--fail-first N]";

/// Idle time after which a keep-alive connection is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

struct Config {
    listen: Vec<String>,
    name: String,
    echo_headers: Vec<String>,
    /// The status of requests whose path does not ask for one.
    status: u16,
    delay: Duration,
    /// Requests still to be answered `503` (`--fail-first`), across all connections.
    failures_left: AtomicU64,
}

struct Request {
    method: String,
    target: String,
    version: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn main() {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => Arc::new(config),
        Err(e) => {
            eprintln!("weft-test-http: {e}\n{USAGE}");
            exit(2);
        }
    };
    let mut acceptors = Vec::new();
    for addr in &config.listen {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| {
            eprintln!("weft-test-http: cannot listen on {addr}: {e}");
            exit(1);
        });
        match listener.local_addr() {
            Ok(local) => println!("weft-test-http {} listening on {local}", config.name),
            Err(_) => println!("weft-test-http {} listening on {addr}", config.name),
        }
        let config = Arc::clone(&config);
        acceptors.push(thread::spawn(move || accept_loop(listener, config)));
    }
    for acceptor in acceptors {
        let _ = acceptor.join();
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Config, String> {
    let mut config = Config {
        listen: Vec::new(),
        name: "weft-test-http".into(),
        echo_headers: Vec::new(),
        status: 200,
        delay: Duration::ZERO,
        failures_left: AtomicU64::new(0),
    };
    while let Some(arg) = args.next() {
        let mut value = |flag: &str| args.next().ok_or(format!("{flag} needs a value"));
        match arg.as_str() {
            "--listen" => config.listen.push(value("--listen")?),
            "--name" => config.name = value("--name")?,
            "--echo-header" => config
                .echo_headers
                .push(value("--echo-header")?.to_ascii_lowercase()),
            "--status" => {
                let v = value("--status")?;
                config.status = v
                    .parse()
                    .ok()
                    .filter(|code| (200..600).contains(code))
                    .ok_or(format!("--status {v:?}: not an HTTP status"))?;
            }
            "--delay" => {
                let v = value("--delay")?;
                let ms: u64 = v
                    .parse()
                    .map_err(|_| format!("--delay {v:?}: not milliseconds"))?;
                config.delay = Duration::from_millis(ms);
            }
            "--fail-first" => {
                let v = value("--fail-first")?;
                let n: u64 = v
                    .parse()
                    .map_err(|_| format!("--fail-first {v:?}: not a number"))?;
                config.failures_left = AtomicU64::new(n);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if config.listen.is_empty() {
        return Err("--listen is required".into());
    }
    Ok(config)
}

fn accept_loop(listener: TcpListener, config: Arc<Config>) {
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let config = Arc::clone(&config);
                thread::spawn(move || {
                    if let Err(e) = serve(stream, &config) {
                        eprintln!("weft-test-http {}: connection error: {e}", config.name);
                    }
                });
            }
            Err(e) => eprintln!("weft-test-http {}: accept: {e}", config.name),
        }
    }
}

fn serve(stream: TcpStream, config: &Config) -> io::Result<()> {
    let peer = stream.peer_addr()?;
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    while let Some(request) = read_request(&mut reader)? {
        let connection = request
            .header("connection")
            .unwrap_or("")
            .to_ascii_lowercase();
        let keep_alive = if request.version == "HTTP/1.0" {
            connection.contains("keep-alive")
        } else {
            !connection.contains("close")
        };
        let status = request
            .target
            .strip_prefix("/status/")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok())
            .filter(|code| (200..600).contains(code))
            .unwrap_or(config.status);
        let failing = config
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        let status = if failing { 503 } else { status };
        let mut body = format!(
            "server={}\nmethod={}\npath={}\n",
            config.name, request.method, request.target
        );
        for name in &config.echo_headers {
            for (_, value) in request.headers.iter().filter(|(n, _)| n == name) {
                body.push_str(&format!("header.{name}={value}\n"));
            }
        }
        println!(
            "{} {} {} {} from {peer} -> {status}",
            config.name, request.method, request.target, request.version
        );
        // 204 and 304 responses carry no body.
        if status == 204 || status == 304 || request.method == "HEAD" {
            body.clear();
        }
        let mut response = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\nx-weft-server: {}\r\n",
            reason(status),
            config.name
        );
        if status != 204 && status != 304 {
            response.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        if !keep_alive {
            response.push_str("connection: close\r\n");
        }
        response.push_str("\r\n");
        response.push_str(&body);
        if !config.delay.is_zero() {
            thread::sleep(config.delay);
        }
        writer.write_all(response.as_bytes())?;
        writer.flush()?;
        if !keep_alive {
            break;
        }
    }
    Ok(())
}

/// Reads one request (head and body). `None` on a clean end of stream or idle timeout.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut line = String::new();
    // Tolerate stray empty lines between requests.
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return Ok(None),
            Ok(_) if line.trim().is_empty() => continue,
            Ok(_) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid(format!("bad request line {line:?}")));
    };
    let mut request = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers: Vec::new(),
    };
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Err(invalid("end of stream inside request headers".into()));
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            request
                .headers
                .push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        skip_chunked_body(reader)?;
    } else if let Some(length) = request.header("content-length") {
        let length: u64 = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        io::copy(&mut reader.take(length), &mut io::sink())?;
    }
    Ok(Some(request))
}

fn skip_chunked_body(reader: &mut impl BufRead) -> io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = u64::from_str_radix(size_text, 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        io::copy(&mut reader.take(size), &mut io::sink())?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_first_counts_requests() {
        let args = ["--listen", "127.0.0.1:1", "--fail-first", "2"].map(String::from);
        let config = parse_args(args.into_iter()).unwrap();
        assert_eq!(config.failures_left.load(Ordering::SeqCst), 2);
        let bad = ["--listen", "127.0.0.1:1", "--fail-first", "x"].map(String::from);
        assert!(parse_args(bad.into_iter()).is_err());
    }
}
