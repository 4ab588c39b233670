//! A small HTTP/1.1 client for tests of the gateway: one request per connection
//! (`Connection: close`), bodies by `Content-Length` or chunked, and a line reader for
//! streaming answers (ndjson). Enough for tests; not a general client.

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A request to send: method, path (with query), headers and an optional body.
#[derive(Debug, Clone, Default)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl HttpRequest {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("authorization", &format!("Bearer {token}"))
    }

    pub fn json(self, body: &serde_json::Value) -> Self {
        self.raw_body(serde_json::to_vec(body).expect("json encodes"))
            .header("content-type", "application/json")
    }

    pub fn raw_body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    /// Sends the request to `addr` and reads the whole answer.
    pub async fn send(&self, addr: &str) -> anyhow::Result<HttpResponse> {
        let mut stream = self.open(addr).await?;
        let body = stream.read_body().await?;
        Ok(HttpResponse {
            status: stream.status,
            headers: stream.headers,
            body,
        })
    }

    /// Sends the request and returns the answer's head, with the body still to read.
    pub async fn open(&self, addr: &str) -> anyhow::Result<HttpStream> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connect {addr}"))?;
        let mut reader = BufReader::new(tcp);
        let mut head = format!(
            "{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n",
            self.method, self.path
        );
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = self.body.clone().unwrap_or_default();
        if self.body.is_some() || !matches!(self.method.as_str(), "GET" | "HEAD") {
            head.push_str(&format!("content-length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let inner = reader.get_mut();
        inner.write_all(head.as_bytes()).await?;
        // A server may answer (413) and stop reading before the body is sent: read its
        // answer anyway.
        let _ = inner.write_all(&body).await;
        let _ = inner.flush().await;

        let mut status_line = String::new();
        reader.read_line(&mut status_line).await?;
        let status: u16 = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {status_line:?}"))?;
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await? == 0 {
                bail!("connection closed in the headers");
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let length = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok());
        Ok(HttpStream {
            status,
            headers,
            reader,
            chunked,
            length,
            pending: Vec::new(),
            done: false,
        })
    }
}

/// An answer whose body is read as it arrives.
pub struct HttpStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<TcpStream>,
    chunked: bool,
    length: Option<usize>,
    /// Body bytes read but not yet handed out as a line.
    pending: Vec<u8>,
    done: bool,
}

impl HttpStream {
    /// The next piece of the body (`None` at its end).
    async fn next_piece(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        if self.done {
            return Ok(None);
        }
        if self.chunked {
            let mut size_line = String::new();
            if self.reader.read_line(&mut size_line).await? == 0 {
                self.done = true;
                return Ok(None);
            }
            let size_text = size_line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .with_context(|| format!("bad chunk size {size_line:?}"))?;
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).await?;
            chunk.truncate(size);
            if size == 0 {
                self.done = true;
                return Ok(None);
            }
            return Ok(Some(chunk));
        }
        self.done = true;
        let mut body = Vec::new();
        match self.length {
            Some(n) => {
                body.resize(n, 0);
                self.reader.read_exact(&mut body).await?;
            }
            None => {
                self.reader.read_to_end(&mut body).await?;
            }
        }
        Ok(Some(body))
    }

    /// The rest of the body.
    pub async fn read_body(&mut self) -> anyhow::Result<Vec<u8>> {
        let mut body = std::mem::take(&mut self.pending);
        while let Some(piece) = self.next_piece().await? {
            body.extend(piece);
        }
        Ok(body)
    }

    /// The next line of the body without its newline (`None` at its end).
    pub async fn next_line(&mut self) -> anyhow::Result<Option<String>> {
        loop {
            if let Some(pos) = self.pending.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=pos).collect();
                return Ok(Some(String::from_utf8_lossy(&line).trim_end().to_owned()));
            }
            match self.next_piece().await? {
                Some(piece) => self.pending.extend(piece),
                None if self.pending.is_empty() => return Ok(None),
                None => {
                    let line = std::mem::take(&mut self.pending);
                    return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
                }
            }
        }
    }
}
