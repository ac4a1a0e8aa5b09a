//! Plain-HTTP health endpoints ("ok"), for the stand-in components' ports.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Answers every request on `addr` with 200 "ok".
pub async fn serve(addr: &str) -> std::io::Result<()> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(())
}

/// `--name=value` flags into a map (the stand-ins accept and ignore unknown flags).
pub fn flags(args: &[String]) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut it = args.iter().peekable();
    while let Some(a) = it.next() {
        if let Some(f) = a.strip_prefix("--") {
            match f.split_once('=') {
                Some((k, v)) => m.insert(k.to_string(), v.to_string()),
                None => m.insert(
                    f.to_string(),
                    it.next_if(|n| !n.starts_with("--"))
                        .cloned()
                        .unwrap_or_else(|| "true".into()),
                ),
            };
        }
    }
    m
}
