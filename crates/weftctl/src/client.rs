//! A tiny HTTP/1.1 client for weftd's admin API (plain HTTP; the API listens on loopback by
//! default): one request per connection, `Connection: close`, bearer token from the admin token file.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Client {
    server: String,
    authority: String,
    prefix: String,
    token: String,
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The server's message: `error` of a JSON body, else the body text.
    pub fn message(&self) -> String {
        match self.json().get("error").and_then(Value::as_str) {
            Some(m) => m.to_string(),
            None => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

/// Splits `http://host:port/prefix` into `host:port` and `/prefix`.
pub fn parse_server(server: &str) -> Result<(String, String), String> {
    if server.starts_with("https://") {
        return Err(format!(
            "--server {server}: https is not supported; the admin API speaks plain HTTP (use http://)"
        ));
    }
    let rest = server.strip_prefix("http://").unwrap_or(server);
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains("://") {
        return Err(format!("--server {server}: want http://HOST:PORT"));
    }
    let has_port = match authority.rsplit_once(':') {
        Some((host, port)) => !host.ends_with(':') && port.parse::<u16>().is_ok(),
        None => false,
    };
    let authority = if has_port {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    Ok((authority, prefix.to_string()))
}

/// Decodes a `Transfer-Encoding: chunked` body.
fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size {
            return Err("truncated chunked body".into());
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Parses a complete HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response from the server")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad HTTP status line {status_line:?}"))?;
    let mut body = raw[head_end + 4..].to_vec();
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        }
    }
    if chunked {
        body = dechunk(&body)?;
    } else if let Some(n) = length {
        body.truncate(n);
    }
    Ok(Response { status, body })
}

impl Client {
    /// A client for `server`, authenticating with the token read from `token_file`.
    pub fn new(server: &str, token_file: &Path) -> Result<Client, String> {
        let (authority, prefix) = parse_server(server)?;
        let token = std::fs::read_to_string(token_file)
            .map_err(|e| {
                format!(
                    "cannot read the admin token from {}: {e} (weftd writes it to <state-dir>/admin-token; \
                     pass --admin-token-file or set WEFT_ADMIN_TOKEN_FILE)",
                    token_file.display()
                )
            })?
            .trim()
            .to_string();
        Ok(Client {
            server: server.to_string(),
            authority,
            prefix,
            token,
        })
    }

    fn connect(&self) -> Result<TcpStream, String> {
        let refused = |e: std::io::Error| {
            format!(
                "cannot connect to weftd at {}: {e} (is weftd running? set --server or WEFT_SERVER)",
                self.server
            )
        };
        let addrs = self.authority.to_socket_addrs().map_err(refused)?;
        let mut last = std::io::Error::other("no address");
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
                Ok(s) => return Ok(s),
                Err(e) => last = e,
            }
        }
        Err(refused(last))
    }

    /// Sends one request; `path` includes any query string.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
    ) -> Result<Response, String> {
        let mut stream = self.connect()?;
        let io = |e: std::io::Error| format!("talking to weftd at {}: {e}", self.server);
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let mut head = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nUser-Agent: weftctl/{}\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.prefix,
            self.authority,
            self.token,
            env!("CARGO_PKG_VERSION"),
            body.len()
        );
        if let Some(ct) = content_type {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).map_err(io)?;
        stream.write_all(body).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        let response = parse_response(&raw)?;
        if response.status == 401 {
            return Err(format!(
                "weftd at {} refused the admin token: {}",
                self.server,
                response.message()
            ));
        }
        Ok(response)
    }
}

/// Percent-encodes a query value.
pub fn encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers() {
        assert_eq!(
            parse_server("http://127.0.0.1:8080").unwrap(),
            ("127.0.0.1:8080".into(), "".into())
        );
        assert_eq!(
            parse_server("localhost").unwrap(),
            ("localhost:80".into(), "".into())
        );
        assert_eq!(
            parse_server("http://[::1]:9/weft/").unwrap(),
            ("[::1]:9".into(), "/weft".into())
        );
        assert!(parse_server("https://x").is_err());
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 16\r\n\r\n{\"error\": \"no\"}\nextra",
        )
        .unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.message(), "no");
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse_response(b"HTTP/1.1 200").is_err());
    }
}
