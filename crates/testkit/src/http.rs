//! A minimal HTTP/1.1 client for the agents' REST API: one request per
//! connection, bounded in time; enough for status codes and small bodies.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.body))
    }
}

/// `method path` on `address` (host:port). Errors are connection failures
/// and timeouts, in words.
pub async fn request(address: &str, method: &str, path: &str) -> Result<Reply, String> {
    let exchange = async {
        let mut stream =
            tokio::net::TcpStream::connect(address).await.map_err(|e| format!("connect {address}: {e}"))?;
        let head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
        stream.write_all(head.as_bytes()).await.map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.map_err(|e| format!("read: {e}"))?;
        parse(&raw, method == "HEAD")
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{method} {path} on {address}: no answer within {REQUEST_TIMEOUT:?}"))?
}

pub async fn get(address: &str, path: &str) -> Result<Reply, String> {
    request(address, "GET", path).await
}

fn parse(raw: &[u8], head_only: bool) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| format!("no header end in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    let chunked = headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"));
    let body = if head_only {
        String::new()
    } else if chunked {
        dechunk(rest)?
    } else {
        rest.to_string()
    };
    Ok(Reply { status, headers, body })
}

fn dechunk(mut rest: &str) -> Result<String, String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").ok_or("truncated chunk size")?;
        let size = usize::from_str_radix(size.trim(), 16).map_err(|_| format!("bad chunk size {size:?}"))?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(after.get(..size).ok_or("truncated chunk")?);
        rest = after.get(size + 2..).ok_or("truncated chunk end")?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn replies() {
        let r =
            super::parse(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"a\":1}", false)
                .unwrap();
        assert_eq!((r.status, r.header("Content-Type"), r.body.as_str()), (503, Some("application/json"), "{\"a\":1}"));
        let r = super::parse(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            false,
        )
        .unwrap();
        assert_eq!(r.body, "abcde");
        assert!(super::parse(b"garbage", false).is_err());
        assert!(super::parse(b"HTTP/1.1 abc\r\n\r\n", false).is_err());
    }
}
