//! Lexical path arithmetic on raw bytes (paths need not be UTF-8).
//!
//! `..` is folded lexically here, which is right only where no symlink
//! comes before it: the trace uses this for an entry's key and keeps the
//! exact request beside it (`Access::requested`), which `trace build`
//! resolves in the image component by component.

/// Joins `raw` onto `base` (when `raw` is relative) and normalizes the
/// result into an absolute path without `.`, `..`, `//` or trailing `/`.
pub fn resolve(raw: &[u8], base: Option<&[u8]>) -> Vec<u8> {
    if raw.first() == Some(&b'/') {
        return normalize(raw);
    }
    let mut joined = base.unwrap_or(b"/").to_vec();
    joined.push(b'/');
    joined.extend_from_slice(raw);
    normalize(&joined)
}

/// Normalizes an absolute path. A relative input is taken relative to `/`.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    let mut out = Vec::with_capacity(path.len() + 1);
    for p in &parts {
        out.push(b'/');
        out.extend_from_slice(p);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> String {
        String::from_utf8(normalize(p.as_bytes())).unwrap()
    }

    #[test]
    fn normalize_folds_dots_and_slashes() {
        assert_eq!(n("/"), "/");
        assert_eq!(n("//"), "/");
        assert_eq!(n("/etc//hostname"), "/etc/hostname");
        assert_eq!(n("/etc/./hostname"), "/etc/hostname");
        assert_eq!(n("/usr/lib/../bin/"), "/usr/bin");
        assert_eq!(n("/.."), "/");
        assert_eq!(n("/../../a"), "/a");
        assert_eq!(n("/a/b/c/../../d"), "/a/d");
        assert_eq!(n("/a/..."), "/a/...");
        assert_eq!(n("/a/.hidden"), "/a/.hidden");
    }

    #[test]
    fn resolve_relative_against_base() {
        let r = |raw: &str, base: Option<&str>| {
            String::from_utf8(resolve(raw.as_bytes(), base.map(str::as_bytes))).unwrap()
        };
        assert_eq!(r("hostname", Some("/etc")), "/etc/hostname");
        assert_eq!(r("./x/../y", Some("/tmp/w")), "/tmp/w/y");
        assert_eq!(r("../../..", Some("/a/b")), "/");
        assert_eq!(r("/abs", Some("/ignored")), "/abs");
        assert_eq!(r("rel", None), "/rel");
        assert_eq!(r(".", Some("/srv")), "/srv");
    }

    #[test]
    fn non_utf8_bytes_survive() {
        assert_eq!(normalize(b"/a/\xff\xfe/./b"), b"/a/\xff\xfe/b");
    }
}
