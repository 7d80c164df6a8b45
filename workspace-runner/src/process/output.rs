//! Capturing a child's stdout and stderr as timestamped lines without ever holding more
//! than a bounded amount of memory: lines are read with a cap on their length (the rest
//! of an over-long line is discarded until its newline), and the job log is a ring that
//! keeps the last `max_log_lines` lines and counts the ones it dropped.
//!
//! Both pipes are drained continuously by their own task, so a child that writes a lot
//! to one of them never blocks on a full pipe while we wait on the other.

use std::collections::VecDeque;
use std::time::SystemTime;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::mpsc;

use super::{LogLine, Stream};

/// Marker appended to a line that was cut at `max_line_bytes`.
pub const CUT_MARKER: &str = "…";

/// Read buffer per pipe; large enough that a flood costs few system calls.
const READ_BUFFER: usize = 64 * 1024;

/// Reads `reader` line by line until end of file (or a read error, which ends the
/// stream like end of file) and sends each line, timestamped when read, to `tx`.
/// Stops early if the receiving side is gone.
pub async fn read_lines<R>(
    reader: R,
    stream: Stream,
    max_line_bytes: usize,
    tx: mpsc::Sender<LogLine>,
) where
    R: AsyncRead + Unpin,
{
    let mut reader = BufReader::with_capacity(READ_BUFFER, reader);
    let mut buf = Vec::new();
    loop {
        let cut = match read_line_bounded(&mut reader, &mut buf, max_line_bytes).await {
            Ok(Some(cut)) => cut,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(stream = %stream.as_str(), error = %e, "reading the child's output failed");
                return;
            }
        };
        let line = LogLine {
            time: SystemTime::now(),
            stream: stream.clone(),
            text: line_text(&buf, cut, max_line_bytes),
        };
        if tx.send(line).await.is_err() {
            return;
        }
    }
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `max` bytes of it and
/// discarding the rest up to the newline. Returns `None` at end of file when no byte of
/// a new line was read, otherwise whether the line was cut. A last line without a
/// trailing newline is returned as a line.
async fn read_line_bounded<R>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>>
where
    R: AsyncBufRead + Unpin,
{
    buf.clear();
    let mut cut = false;
    let mut seen_any = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(seen_any.then_some(cut));
        }
        seen_any = true;
        let (chunk, consumed, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if chunk.len() > room {
            cut = true;
        }
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        reader.consume(consumed);
        if done {
            return Ok(Some(cut));
        }
    }
}

/// Turns the raw bytes of a line into its text: a trailing `\r` is stripped, invalid
/// UTF-8 is replaced, and a cut line is shortened on a character boundary to at most
/// `max` bytes and marked with [`CUT_MARKER`].
fn line_text(raw: &[u8], cut: bool, max: usize) -> String {
    let mut raw = raw;
    if cut {
        // Drop a multi-byte character that the cut split, rather than showing it as U+FFFD.
        if let Err(e) = std::str::from_utf8(raw)
            && e.error_len().is_none()
        {
            raw = &raw[..e.valid_up_to()];
        }
    } else if let Some(stripped) = raw.strip_suffix(b"\r") {
        raw = stripped;
    }
    let mut text = String::from_utf8_lossy(raw).into_owned();
    if cut || text.len() > max {
        // Replacement characters can make the text longer than the bytes it came from.
        let mut end = text.len().min(max);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str(CUT_MARKER);
    }
    text
}

/// The job log: the last `capacity` lines, and how many older ones were dropped.
#[derive(Debug)]
pub struct Ring {
    capacity: usize,
    lines: VecDeque<LogLine>,
    dropped: u64,
}

impl Ring {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            // Do not trust the bound for a preallocation: it may be large.
            lines: VecDeque::with_capacity(capacity.min(1024)),
            dropped: 0,
        }
    }

    pub fn push(&mut self, line: LogLine) {
        if self.capacity == 0 {
            self.dropped += 1;
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
            self.dropped += 1;
        }
        self.lines.push_back(line);
    }

    pub fn into_parts(self) -> (Vec<LogLine>, u64) {
        (self.lines.into(), self.dropped)
    }
}

/// Receives every line until all senders are gone, hands each to `on_line`, and keeps
/// the last `capacity` of them.
pub async fn collect(
    mut rx: mpsc::Receiver<LogLine>,
    on_line: &(dyn Fn(&LogLine) + Send + Sync),
    capacity: usize,
) -> Ring {
    let mut ring = Ring::new(capacity);
    while let Some(line) = rx.recv().await {
        on_line(&line);
        ring.push(line);
    }
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8], max: usize) -> Vec<String> {
        let (tx, mut rx) = mpsc::channel(16);
        let input = input.to_vec();
        let reader =
            tokio::spawn(async move { read_lines(&input[..], Stream::Stdout, max, tx).await });
        let mut out = Vec::new();
        while let Some(line) = rx.recv().await {
            out.push(line.text);
        }
        reader.await.unwrap();
        out
    }

    #[tokio::test]
    async fn splits_on_newlines_and_strips_carriage_returns() {
        assert_eq!(lines_of(b"a\r\nb\n\nc", 100).await, ["a", "b", "", "c"]);
        assert_eq!(lines_of(b"", 100).await, Vec::<String>::new());
        assert_eq!(lines_of(b"x\n", 100).await, ["x"]);
    }

    #[tokio::test]
    async fn invalid_utf8_is_replaced() {
        assert_eq!(lines_of(b"a\xffb\n", 100).await, ["a\u{fffd}b"]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_discarded() {
        let mut input = vec![b'a'; 3 * READ_BUFFER];
        input.extend_from_slice(b"\nnext\n");
        let lines = lines_of(&input, 10).await;
        assert_eq!(
            lines,
            [format!("{}{CUT_MARKER}", "a".repeat(10)), "next".into()]
        );
        // Exactly max bytes is not a cut.
        assert_eq!(lines_of(b"0123456789\n", 10).await, ["0123456789"]);
    }

    #[tokio::test]
    async fn cuts_fall_on_character_boundaries() {
        // "é" is two bytes: a cut at 5 bytes keeps two of them.
        let lines = lines_of("ééééé\n".as_bytes(), 5).await;
        assert_eq!(lines, [format!("éé{CUT_MARKER}")]);
        // Replacement characters are three bytes for one input byte.
        let lines = lines_of(b"\xff\xff\xff\xff\n", 4).await;
        assert_eq!(lines, [format!("\u{fffd}{CUT_MARKER}")]);
    }

    #[test]
    fn ring_keeps_the_last_lines_and_counts_the_rest() {
        let line = |n: usize| LogLine {
            time: SystemTime::now(),
            stream: Stream::Stdout,
            text: n.to_string(),
        };
        let mut ring = Ring::new(3);
        (0..10).for_each(|n| ring.push(line(n)));
        let (lines, dropped) = ring.into_parts();
        let texts: Vec<_> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["7", "8", "9"]);
        assert_eq!(dropped, 7);

        let mut empty = Ring::new(0);
        empty.push(line(1));
        assert_eq!(empty.into_parts().1, 1);
    }
}
