//! Names in text output. A traced program chooses its file names, so a
//! name may hold a newline (which would split a line-based list) or a
//! terminal escape sequence; none reaches a terminal or a list raw.
//!
//! One form everywhere a path is written as text (allowlist, `--format
//! text`, `trace report`): glob characters and `\` are escaped with `\`,
//! and a byte a line cannot hold (a control character, a byte that is not
//! UTF-8, a trailing space) is `\xHH`. `--include` and `--include-from`
//! read it back to the exact bytes (`closure::rules`).

/// Bytes written with a backslash before them: glob syntax and `\`.
pub fn is_glob_syntax(b: u8) -> bool {
    matches!(b, b'*' | b'?' | b'[' | b']' | b'{' | b'}' | b'\\')
}

fn push_hex(out: &mut String, c: char) {
    let mut buf = [0; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("\\x{b:02x}"));
    }
}

/// A path as one line of text that `--include-from` reads back exactly.
pub fn path(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        let valid = chunk.valid();
        let at_end = chunk.invalid().is_empty();
        for (i, c) in valid.char_indices() {
            let last = at_end && i + c.len_utf8() == valid.len();
            if c.is_control() || (last && c.is_whitespace()) {
                push_hex(&mut out, c);
            } else {
                if c.is_ascii() && is_glob_syntax(c as u8) {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Free text (an argument, a command name, an error message) made safe
/// for a terminal: control characters as `\xHH`, `\` as `\\`.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => push_hex(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn paths_and_text() {
        assert_eq!(super::path(b"/a/b[1]*.txt"), "/a/b\\[1\\]\\*.txt");
        assert_eq!(super::path(b"/opt/new\nline"), "/opt/new\\x0aline");
        assert_eq!(super::path(b"/opt/caf\xe9 x "), "/opt/caf\\xe9 x\\x20");
        assert_eq!(super::path("/é".as_bytes()), "/é");
        assert_eq!(super::text("a\x1b[31mred\\"), "a\\x1b[31mred\\\\");
    }
}
