//! The OCI ChainID of a layer stack: the name of the filesystem that
//! applying the layers in order gives, whatever their compression or
//! which image they came from (image-spec `config.md`, "Layer ChainID").
use sha2::{Digest, Sha256};

/// `ChainID(L0) = DiffID(L0)`, `ChainID(L0|…|Ln) = sha256(ChainID(L0|…|Ln-1)
/// + " " + DiffID(Ln))`, over the `sha256:<hex>` strings. `diff_ids` are
/// the bare hex digests, bottom layer first; returns the bare hex, or
/// `None` for an image without layers.
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let (first, rest) = diff_ids.split_first()?;
    let mut chain = first.clone();
    for diff in rest {
        let text = format!("sha256:{chain} sha256:{diff}");
        chain = crate::source::archive::hex(&Sha256::digest(text.as_bytes()));
    }
    Some(chain)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(c: char) -> String {
        c.to_string().repeat(64)
    }

    #[test]
    fn one_layer_is_its_own_diff_id() {
        assert_eq!(chain_id(&[h('a')]), Some(h('a')));
        assert_eq!(chain_id(&[]), None);
    }

    /// Expected values from coreutils, outside this code:
    /// `printf 'sha256:aaa… sha256:bbb…' | sha256sum`, then that digest
    /// with ` sha256:ccc…` the same way.
    #[test]
    fn stacked_layers_follow_the_spec_recursion() {
        let two = "ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c";
        let three = "c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588";
        assert_eq!(chain_id(&[h('a'), h('b')]).as_deref(), Some(two));
        assert_eq!(chain_id(&[h('a'), h('b'), h('c')]).as_deref(), Some(three));
        // Order matters: the same layers stacked the other way are
        // another filesystem.
        assert_ne!(chain_id(&[h('b'), h('a')]).as_deref(), Some(two));
    }
}
