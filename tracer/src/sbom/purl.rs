//! Package URLs (github.com/package-url/purl-spec): every component
//! percent-encoded except the unreserved characters, so a Debian version's
//! `+` is `%2B` and its epoch colon `%3A`.
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

const KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, KEEP).to_string()
}

/// `pkg:TYPE/[NAMESPACE/]NAME@VERSION[?k=v&…]`; qualifiers are sorted
/// by key as the spec's canonical form wants.
pub fn build(
    ty: &str,
    namespace: Option<&str>,
    name: &str,
    version: &str,
    qualifiers: &[(&str, &str)],
) -> String {
    let mut s = format!("pkg:{ty}/");
    if let Some(ns) = namespace {
        s.push_str(&enc(ns));
        s.push('/');
    }
    s.push_str(&enc(name));
    s.push('@');
    s.push_str(&enc(version));
    let mut q: Vec<&(&str, &str)> = qualifiers.iter().filter(|(_, v)| !v.is_empty()).collect();
    q.sort();
    for (i, (k, v)) in q.iter().enumerate() {
        s.push(if i == 0 { '?' } else { '&' });
        s.push_str(k);
        s.push('=');
        s.push_str(&enc(v));
    }
    s
}

/// PyPI names compare case-insensitively with `-`, `_` and `.` alike
/// (PEP 503); the purl uses the normalized form.
pub fn pypi_name(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.extend(c.to_lowercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_versions_are_encoded() {
        assert_eq!(
            build(
                "deb",
                Some("debian"),
                "python3.11",
                "3.11.2-6+deb12u6",
                &[("distro", "debian-12"), ("arch", "amd64")]
            ),
            "pkg:deb/debian/python3.11@3.11.2-6%2Bdeb12u6?arch=amd64&distro=debian-12"
        );
        assert_eq!(
            build(
                "deb",
                Some("debian"),
                "libc6",
                "1:2.36-9~x",
                &[("arch", "amd64")]
            ),
            "pkg:deb/debian/libc6@1%3A2.36-9~x?arch=amd64"
        );
        assert_eq!(
            build("npm", Some("@types"), "node", "20.1.0", &[]),
            "pkg:npm/%40types/node@20.1.0"
        );
    }

    #[test]
    fn pypi_names_are_normalized() {
        assert_eq!(pypi_name("Pygments"), "pygments");
        assert_eq!(pypi_name("zope.interface"), "zope-interface");
        assert_eq!(pypi_name("Foo__Bar-baz"), "foo-bar-baz");
    }
}
