//! Mount points and roots a traced program made during the run.
//!
//! A name the program asked for that goes through a bind (or move) mount
//! it made is not where the file lies in the image: the kernel reached
//! the bind's source, which only an observed descriptor would show. Nor
//! is a `..` climbing out of a directory the program made its root (the
//! kernel stops there) or out of a bind's source (reached, perhaps,
//! through the mount, whose parent is elsewhere). The collector counts
//! such names (`unobserved`) instead of filing them as if they were sure.

use std::borrow::Cow;

use crate::model::{path::normalize, trace::Op};

#[derive(Default)]
pub struct MountsMade {
    /// Mount points of binds and moves, absolute and folded.
    targets: Vec<Vec<u8>>,
    /// Binds' sources, and roots set by chroot and pivot_root: a `..`
    /// from one of these may not go where its name says.
    tops: Vec<Vec<u8>>,
}

/// Why a name may not be where the file lies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Doubt {
    /// Below a bind or move mount made during the run.
    BindMount,
    /// A `..` past a root or a bind's source made during the run (or past
    /// the caller's own root, given as the base of an absolute path).
    PastRoot,
}

impl Doubt {
    /// The `unobserved` channel it is counted under.
    pub fn channel(self) -> &'static str {
        match self {
            Doubt::BindMount => "bind mount",
            Doubt::PastRoot => "root",
        }
    }
}

impl MountsMade {
    /// A bind or move of `source` (when it is a path) onto `target`.
    pub fn add_mount(&mut self, source: Option<&[u8]>, target: &[u8]) {
        if source == Some(target) {
            // A directory bound onto itself (to make it a mount point, as
            // pivot_root wants) shows what its name says.
            return;
        }
        push_new(&mut self.targets, target);
        if let Some(s) = source {
            push_new(&mut self.tops, s);
        }
    }

    /// A new root (chroot, pivot_root's new_root).
    pub fn add_root(&mut self, root: &[u8]) {
        push_new(&mut self.tops, root);
    }

    /// Whether the name asked for (`key` folded, `exact` unfolded) may
    /// lead elsewhere than it says. `relative`: it was looked up from a
    /// working directory or dirfd (an absolute one starts at the caller's
    /// root, whose `..` is handled where it is joined, `at_root`).
    /// `outside`: it lies outside the scope's root (a tree the program
    /// built elsewhere and pivoted into, a bind inside which the name
    /// cannot show).
    pub fn doubt(&self, key: &[u8], exact: &[u8], relative: bool, outside: bool) -> Option<Doubt> {
        if self.targets.is_empty() && self.tops.is_empty() {
            return None;
        }
        if self.targets.iter().any(|t| strictly_below(key, t))
            || (outside && !self.targets.is_empty())
        {
            return Some(Doubt::BindMount);
        }
        (relative && climbs_out_of(exact, &self.tops)).then_some(Doubt::PastRoot)
    }
}

/// Whether an access of `op` (its second path when `second`) depends on
/// what is already at its path: creations do not, and neither do sockets,
/// which no image holds.
pub fn reads_existing(op: Op, second: bool) -> bool {
    match op {
        Op::Mkdir | Op::Symlink | Op::Mknod | Op::Bind | Op::Connect | Op::Umount => false,
        Op::Link | Op::Rename => !second,
        _ => true,
    }
}

/// Filesystem types that look up directories named in their mount
/// options (overlayfs's `lowerdir=`, `upperdir=`, `workdir=`).
pub fn reads_paths_from_options(fstype: &[u8]) -> bool {
    matches!(fstype, b"overlay" | b"overlayfs")
}

/// `raw`, an absolute path looked up from `base`, the caller's root: the
/// `..` components met at that root are dropped, as the kernel stays
/// there. The flag says a later `..` climbs above the root; the path is
/// then folded as if nothing on the way were a symlink (the best guess),
/// and it is counted.
pub fn at_root(raw: &[u8]) -> (Cow<'_, [u8]>, bool) {
    let mut rest = trim_slashes(raw);
    loop {
        let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        if !matches!(&rest[..end], b".." | b".") {
            break;
        }
        rest = trim_slashes(&rest[end..]);
    }
    let mut depth: i64 = 0;
    for c in rest.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth < 0 {
                    return (Cow::Owned(normalize(&[b"/", raw].concat())), true);
                }
            }
            _ => depth += 1,
        }
    }
    (Cow::Borrowed(rest), false)
}

fn trim_slashes(p: &[u8]) -> &[u8] {
    let n = p.iter().take_while(|&&b| b == b'/').count();
    &p[n..]
}

fn push_new(v: &mut Vec<Vec<u8>>, p: &[u8]) {
    if !v.iter().any(|x| x == p) {
        v.push(p.to_vec());
    }
}

fn strictly_below(key: &[u8], top: &[u8]) -> bool {
    if top == b"/" {
        return key.len() > 1;
    }
    key.len() > top.len() && key.starts_with(top) && key[top.len()] == b'/'
}

/// Whether folding `exact` applies a `..` while standing at one of `tops`.
fn climbs_out_of(exact: &[u8], tops: &[Vec<u8>]) -> bool {
    if tops.is_empty() || !exact.split(|&b| b == b'/').any(|c| c == b"..") {
        return false;
    }
    let mut at: Vec<u8> = Vec::with_capacity(exact.len());
    for c in exact.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                let here: &[u8] = if at.is_empty() { b"/" } else { &at };
                if tops.iter().any(|t| t.as_slice() == here) {
                    return true;
                }
                let cut = at.iter().rposition(|&b| b == b'/').unwrap_or(0);
                at.truncate(cut);
            }
            _ => {
                at.push(b'/');
                at.extend_from_slice(c);
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_a_bind_target_is_in_doubt_but_the_mount_point_is_not() {
        let mut m = MountsMade::default();
        m.add_mount(Some(b"/srv/a"), b"/mnt/b");
        assert_eq!(
            m.doubt(b"/mnt/b/f", b"/mnt/b/f", false, false),
            Some(Doubt::BindMount)
        );
        assert_eq!(m.doubt(b"/mnt/b", b"/mnt/b", false, false), None);
        assert_eq!(m.doubt(b"/mnt/bb/f", b"/mnt/bb/f", false, false), None);
        assert_eq!(m.doubt(b"/srv/a/f", b"/srv/a/f", false, false), None);
        // A tree outside the scope's root, with binds made: it may hold one.
        assert_eq!(
            m.doubt(b"/data/f", b"/data/f", false, true),
            Some(Doubt::BindMount)
        );
    }

    #[test]
    fn a_dotdot_out_of_a_source_or_root_is_in_doubt() {
        let mut m = MountsMade::default();
        m.add_mount(Some(b"/srv/a"), b"/mnt/b");
        m.add_root(b"/jail");
        // The cwd inside /mnt/b is named /srv/a: its parent is /mnt.
        let rel = |k: &[u8], e: &[u8]| m.doubt(k, e, true, false);
        assert_eq!(rel(b"/srv/x", b"/srv/a/../x"), Some(Doubt::PastRoot));
        assert_eq!(rel(b"/x", b"/jail/d/../../x"), Some(Doubt::PastRoot));
        assert_eq!(rel(b"/jail/x", b"/jail/d/../x"), None);
        assert_eq!(rel(b"/srv/a/x", b"/srv/a/y/../x"), None);
        // An absolute name from the host's root means what it says.
        assert_eq!(m.doubt(b"/x", b"/jail/../x", false, false), None);
    }

    #[test]
    fn a_directory_bound_onto_itself_is_no_doubt() {
        let mut m = MountsMade::default();
        m.add_mount(Some(b"/nr"), b"/nr");
        assert_eq!(m.doubt(b"/nr/old", b"/nr/old", false, false), None);
    }

    #[test]
    fn nothing_made_nothing_doubted() {
        let m = MountsMade::default();
        assert_eq!(m.doubt(b"/x", b"/a/../x", true, true), None);
    }

    #[test]
    fn dotdot_at_the_root_stays_there() {
        let t = |raw: &[u8]| {
            let (p, past) = at_root(raw);
            (String::from_utf8_lossy(&p).into_owned(), past)
        };
        assert_eq!(t(b"/../etc/x"), ("etc/x".into(), false));
        assert_eq!(t(b"//.././../etc"), ("etc".into(), false));
        assert_eq!(t(b"/.."), ("".into(), false));
        assert_eq!(t(b"/"), ("".into(), false));
        assert_eq!(t(b"/etc/../x"), ("etc/../x".into(), false));
        assert_eq!(t(b"/..a/x"), ("..a/x".into(), false));
        // Past the root again later: folded in the root, and flagged, as
        // where it lands depends on whether `a` is a symlink.
        assert_eq!(t(b"/a/../../x"), ("/x".into(), true));
    }

    #[test]
    fn creations_do_not_read_what_is_there() {
        assert!(!reads_existing(Op::Mkdir, false));
        assert!(!reads_existing(Op::Rename, true));
        assert!(reads_existing(Op::Rename, false));
        assert!(reads_existing(Op::Stat, false));
        assert!(reads_paths_from_options(b"overlay"));
        assert!(!reads_paths_from_options(b"tmpfs"));
    }
}
