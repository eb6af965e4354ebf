//! Prometheus' text format, written by hand for the series rendered from the inventory
//! (integers only), into a String or in chunks for a streamed `/metrics` answer.

/// Bytes a chunk of a streamed answer holds: large enough that the per-chunk cost
/// (a channel send, a TLS record or a few) is nothing, small enough to keep none of
/// the 65 MB of a 100k-instance scrape in memory at once.
pub const CHUNK: usize = 256 * 1024;

/// Where the text is written.
pub trait Out: std::fmt::Write {
    fn push_str(&mut self, s: &str);
    fn push(&mut self, c: char);
}

impl Out for String {
    fn push_str(&mut self, s: &str) {
        String::push_str(self, s);
    }
    fn push(&mut self, c: char) {
        String::push(self, c);
    }
}

/// Text handed on in pieces of about [`CHUNK`] bytes. Once `send` answers false (the
/// reader is gone), further text is dropped.
pub struct Chunked<F: FnMut(String) -> bool> {
    buffer: String,
    send: F,
    open: bool,
}

impl<F: FnMut(String) -> bool> Chunked<F> {
    pub fn new(send: F) -> Self {
        Self {
            buffer: String::with_capacity(CHUNK + 1024),
            send,
            open: true,
        }
    }

    fn hand_on(&mut self) {
        if self.open && !self.buffer.is_empty() {
            let full = std::mem::replace(&mut self.buffer, String::with_capacity(CHUNK + 1024));
            self.open = (self.send)(full);
        }
    }

    /// Hands on what is left.
    pub fn finish(mut self) {
        self.hand_on();
    }
}

impl<F: FnMut(String) -> bool> Out for Chunked<F> {
    fn push_str(&mut self, s: &str) {
        if !self.open {
            return;
        }
        self.buffer.push_str(s);
        if self.buffer.len() >= CHUNK {
            self.hand_on();
        }
    }
    fn push(&mut self, c: char) {
        self.push_str(c.encode_utf8(&mut [0; 4]));
    }
}

impl<F: FnMut(String) -> bool> std::fmt::Write for Chunked<F> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        Out::push_str(self, s);
        Ok(())
    }
}

/// Label value escaping of the text format: backslash, double quote, newline.
fn escape(value: &str, out: &mut impl Out) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Appends `k="v",...` (escaped).
pub fn push_labels(out: &mut impl Out, labels: &[(&str, &str)]) {
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        escape(v, out);
        out.push('"');
    }
}

/// Appends a non-negative integer. Every inventory value is one (counts, bytes,
/// flags), and this is several times cheaper than formatting an f64.
pub fn push_u64(out: &mut impl Out, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[start..]).expect("ASCII digits"));
}

/// One sample line: `name{labels} value`, with `labels` already escaped.
pub fn sample(out: &mut impl Out, name: &str, labels: &str, value: u64) {
    out.push_str(name);
    out.push('{');
    out.push_str(labels);
    out.push_str("} ");
    push_u64(out, value);
    out.push('\n');
}

pub fn header(out: &mut impl Out, name: &str, help: &str) {
    out.push_str("# HELP ");
    out.push_str(name);
    out.push(' ');
    out.push_str(help);
    out.push_str("\n# TYPE ");
    out.push_str(name);
    out.push_str(" gauge\n");
}

/// The escaped label sets of many series in one buffer: the label set of a node or an
/// instance is the same in each of its families, so it is built (and escaped) once.
#[derive(Default)]
pub struct LabelSets {
    text: String,
    ends: Vec<usize>,
}

impl LabelSets {
    pub fn push(&mut self, labels: &[(&str, &str)]) {
        push_labels(&mut self.text, labels);
        self.ends.push(self.text.len());
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).map(|(s, e)| &self.text[s..*e])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_lines(out: &mut impl Out, lines: usize) {
        for n in 0..lines {
            sample(out, "m", "a=\"b\"", n as u64);
        }
    }

    #[test]
    fn chunks_join_to_the_whole_text_and_each_is_about_chunk_sized() {
        let mut whole = String::new();
        write_lines(&mut whole, 100_000);
        let mut chunks = Vec::new();
        let mut out = Chunked::new(|chunk| {
            chunks.push(chunk);
            true
        });
        write_lines(&mut out, 100_000);
        out.finish();
        assert!(chunks.len() > 2, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() < CHUNK + 64));
        assert!(chunks[..chunks.len() - 1].iter().all(|c| c.len() >= CHUNK));
        assert_eq!(chunks.concat(), whole);
    }

    #[test]
    fn nothing_more_is_handed_on_once_the_reader_is_gone() {
        let mut sent = 0;
        let mut out = Chunked::new(|_| {
            sent += 1;
            false
        });
        write_lines(&mut out, 100_000);
        out.finish();
        assert_eq!(sent, 1);
    }
}
