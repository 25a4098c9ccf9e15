//! Requested paths that go on through a `/proc` magic link.
//!
//! `/proc/<pid>/root`, `cwd`, `exe`, `fd/<n>` (and `/dev/fd/<n>`,
//! `/dev/stdin`, which lead there) are links the kernel follows to the
//! file they stand for, whatever their text says. A path that goes on past
//! one (`/proc/self/fd/3/conf.d/x`) names a `/proc` file no image holds,
//! while the kernel reached a file elsewhere. It is only sure which file
//! when the link is the caller's own root (`/proc/self/root/etc/hostname`
//! is `/etc/hostname`), which the capture rewrites, or its own working
//! directory, which the kernel side names (`flags::BASE1_IS_CWD`); the
//! rest are counted.
//!
//! The analysis is lexical up to the link, as the kernel's own walk is
//! there: `/proc/self` and `/proc/thread-self` are plain relative links
//! to a directory of `/proc`, so `..` below them folds as text.

/// What a requested path went through.
#[derive(Debug, PartialEq, Eq)]
pub enum Link {
    /// `/proc/self/root` or `/proc/thread-self/root`: the caller's root.
    OwnRoot,
    /// Another process's root, a working directory, a descriptor.
    Other,
}

/// A magic link a path goes on through, and what follows it.
#[derive(Debug, PartialEq, Eq)]
pub struct Through {
    pub link: Link,
    /// The components after the link, joined by `/` (`..` kept).
    pub rest: Vec<u8>,
}

/// Where `path` (absolute, unfolded) goes on through a magic link of the
/// procfs mounted at `procfs` (components, `["proc"]` for `/proc`) or of
/// `/dev/fd`, if it does. A path that ends at the link names the link
/// itself: for an lstat or readlink that is the `/proc` entry, and a
/// following call reaches a file the capture records anyway (the
/// program's working directory, root or executable, a descriptor's file).
pub fn through(path: &[u8], procfs: &[&[u8]]) -> Option<Through> {
    // Most paths have nothing to do with /proc: leave them at once. This
    // runs for every record, on the reader's thread.
    if !names_a_component(path, procfs.first().copied()) {
        return None;
    }
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .collect();
    let mut stack: Vec<&[u8]> = Vec::with_capacity(parts.len());
    for (i, part) in parts.iter().enumerate() {
        if *part == b".." {
            stack.pop();
            continue;
        }
        stack.push(part);
        let Some(link) = link_at(&stack, procfs) else {
            continue;
        };
        let rest = &parts[i + 1..];
        if rest.is_empty() {
            return None;
        }
        return Some(Through {
            link,
            rest: rest.join(&b'/'),
        });
    }
    None
}

/// Whether a component of `path` is `dev`, `proc` or `top` (the procfs
/// mount's first component): one pass, looking only where a component
/// starts.
fn names_a_component(path: &[u8], top: Option<&[u8]>) -> bool {
    let is = |at: usize, name: &[u8]| {
        let end = at + name.len();
        end <= path.len() && &path[at..end] == name && (end == path.len() || path[end] == b'/')
    };
    let mut at = 0;
    while at < path.len() {
        if path[at] != b'/' {
            if is(at, b"proc") || is(at, b"dev") || top.is_some_and(|t| is(at, t)) {
                return true;
            }
            while at < path.len() && path[at] != b'/' {
                at += 1;
            }
        }
        at += 1;
    }
    false
}

fn digits(c: &[u8]) -> bool {
    !c.is_empty() && c.iter().all(u8::is_ascii_digit)
}

/// The magic link `stack` ends at, if it is one.
fn link_at(stack: &[&[u8]], procfs: &[&[u8]]) -> Option<Link> {
    match stack {
        [b"dev", b"fd", n] if digits(n) => return Some(Link::Other),
        [b"dev", b"stdin" | b"stdout" | b"stderr"] => return Some(Link::Other),
        _ => {}
    }
    let inside = stack.strip_prefix(procfs)?;
    // The process directory: self, thread-self, or a pid, maybe a thread
    // of it (whose root may differ: CLONE_FS unshared).
    let (own, link) = match inside {
        [pid, b"task", tid, link @ ..] if (*pid == b"self" || digits(pid)) && digits(tid) => {
            (false, link)
        }
        [b"self" | b"thread-self", link @ ..] => (true, link),
        [pid, link @ ..] if digits(pid) => (false, link),
        _ => return None,
    };
    match link {
        [b"root"] if own => Some(Link::OwnRoot),
        [b"root" | b"cwd" | b"exe"] => Some(Link::Other),
        [b"fd", n] if digits(n) => Some(Link::Other),
        [b"map_files" | b"ns", _] => Some(Link::Other),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC: &[&[u8]] = &[b"proc"];

    fn t(path: &str) -> Option<(Link, String)> {
        through(path.as_bytes(), PROC).map(|t| (t.link, String::from_utf8(t.rest).unwrap()))
    }

    #[test]
    fn own_root_is_told_apart_from_every_other_link() {
        assert_eq!(
            t("/proc/self/root/etc/hostname"),
            Some((Link::OwnRoot, "etc/hostname".into()))
        );
        assert_eq!(
            t("/proc/thread-self/root/../etc"),
            Some((Link::OwnRoot, "../etc".into()))
        );
        for other in [
            "/proc/self/cwd/f",
            "/proc/1234/root/etc/x",
            "/proc/1234/task/1240/cwd/x",
            "/proc/self/task/7/root/x",
            "/proc/self/fd/3/d/f",
            "/proc/thread-self/fd/12/x",
            "/proc/self/exe/x",
            "/dev/fd/3/x",
            "/dev/stdin/x",
        ] {
            assert_eq!(t(other).map(|(l, _)| l), Some(Link::Other), "{other}");
        }
    }

    #[test]
    fn a_path_that_ends_at_the_link_or_misses_it_is_left_alone() {
        for plain in [
            "/proc/self/root",
            "/proc/self/exe",
            "/proc/self/fd/3",
            "/proc/self/fd",
            "/proc/self/status",
            "/proc/1/mountinfo",
            "/proc/sys/kernel/root/x",
            "/proc/self/fdinfo/3",
            "/home/proc/self/root/x",
            "/dev/fd",
            "/dev/null",
            "/etc/hostname",
        ] {
            assert_eq!(t(plain), None, "{plain}");
        }
    }

    #[test]
    fn dotdot_before_the_link_folds_and_after_it_is_kept() {
        assert_eq!(
            t("/proc/x/../self/root/etc/passwd"),
            Some((Link::OwnRoot, "etc/passwd".into()))
        );
        // The kernel follows the cwd first, then goes up from there: the
        // text folded would say /proc/etc/x.
        assert_eq!(
            t("/proc/self/cwd/../../etc/x"),
            Some((Link::Other, "../../etc/x".into()))
        );
        assert_eq!(t("/proc/./self//cwd/./x"), Some((Link::Other, "x".into())));
    }

    #[test]
    fn procfs_mounted_elsewhere_is_found_at_its_mount() {
        let at: &[&[u8]] = &[b"mnt", b"p"];
        let got = through(b"/mnt/p/self/cwd/x", at).map(|t| t.link);
        assert_eq!(got, Some(Link::Other));
        assert_eq!(through(b"/proc/self/cwd/x", at), None);
    }
}
