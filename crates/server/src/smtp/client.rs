//! Outbound SMTP: hands one sealed message for one recipient to another HISP's server (EHLO,
//! MAIL, RCPT, DATA with dot-stuffing, QUIT), and says whether it was accepted, refused for good
//! (a 5xx reply) or is worth trying again (a 4xx reply, a connection or timeout failure).
//! Plain SMTP only: STARTTLS to the next hop is not done yet (the content is S/MIME encrypted
//! and signed regardless).

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the other server did with the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Accepted,
    /// Refused for good (5xx), with the reply.
    Permanent(String),
    /// Worth another attempt (4xx, connection failure, timeout), with why.
    Transient(String),
}

type Conn = BufReader<TcpStream>;

/// Reads one (possibly multi-line) reply: its code and its text.
async fn reply(conn: &mut Conn, timeout: Duration) -> Result<(u16, String), String> {
    let mut text = String::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(timeout, conn.read_line(&mut line))
            .await
            .map_err(|_| "timed out waiting for a reply".to_string())?
            .map_err(|e| format!("connection failed: {e}"))?;
        if n == 0 {
            return Err("connection closed".to_string());
        }
        if line.len() > 4096 {
            return Err("reply line too long".to_string());
        }
        let code = line
            .get(..3)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| format!("not an SMTP reply: {}", line.trim_end()))?;
        text.push_str(line.trim_end());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, text));
        }
        text.push(' ');
    }
}

async fn command(conn: &mut Conn, line: &str, timeout: Duration) -> Result<(u16, String), String> {
    tokio::time::timeout(timeout, conn.get_mut().write_all(line.as_bytes()))
        .await
        .map_err(|_| "timed out writing".to_string())?
        .map_err(|e| format!("connection failed: {e}"))?;
    reply(conn, timeout).await
}

/// The message's lines with CR LF endings, dot-stuffed, ending with `.` alone.
pub fn data_block(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 50 + 8);
    for line in message.split_inclusive(|b| *b == b'\n') {
        let body = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        if body.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(body);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

fn classify(step: &str, (code, text): (u16, String)) -> Delivery {
    if code >= 500 {
        Delivery::Permanent(format!("{step}: {text}"))
    } else {
        Delivery::Transient(format!("{step}: {text}"))
    }
}

/// Sends `message` from `sender` to `recipient` through the server at `address` (`host:port`).
pub async fn send(
    address: &str,
    hostname: &str,
    sender: &str,
    recipient: &str,
    message: &[u8],
    timeout: Duration,
) -> Delivery {
    match send_inner(address, hostname, sender, recipient, message, timeout).await {
        Ok(d) => d,
        Err(why) => Delivery::Transient(why),
    }
}

async fn send_inner(
    address: &str,
    hostname: &str,
    sender: &str,
    recipient: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<Delivery, String> {
    let tcp = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| format!("timed out connecting to {address}"))?
        .map_err(|e| format!("cannot connect to {address}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let mut conn = BufReader::new(tcp);
    let greeting = reply(&mut conn, timeout).await?;
    if greeting.0 != 220 {
        return Ok(classify("greeting", greeting));
    }
    let ehlo = command(&mut conn, &format!("EHLO {hostname}\r\n"), timeout).await?;
    if ehlo.0 != 250 {
        let helo = command(&mut conn, &format!("HELO {hostname}\r\n"), timeout).await?;
        if helo.0 != 250 {
            return Ok(classify("HELO", helo));
        }
    }
    let mail = command(
        &mut conn,
        &format!("MAIL FROM:<{sender}> SIZE={}\r\n", message.len()),
        timeout,
    )
    .await?;
    if mail.0 != 250 {
        return Ok(classify("MAIL", mail));
    }
    let rcpt = command(&mut conn, &format!("RCPT TO:<{recipient}>\r\n"), timeout).await?;
    if rcpt.0 != 250 && rcpt.0 != 251 {
        return Ok(classify("RCPT", rcpt));
    }
    let data = command(&mut conn, "DATA\r\n", timeout).await?;
    if data.0 != 354 {
        return Ok(classify("DATA", data));
    }
    let block = data_block(message);
    tokio::time::timeout(timeout, conn.get_mut().write_all(&block))
        .await
        .map_err(|_| "timed out sending the message".to_string())?
        .map_err(|e| format!("connection failed: {e}"))?;
    let done = reply(&mut conn, timeout).await?;
    let _ = command(&mut conn, "QUIT\r\n", timeout).await;
    if done.0 == 250 {
        Ok(Delivery::Accepted)
    } else {
        Ok(classify("end of data", done))
    }
}
