//! HTTP asset path decoding + confinement: no panic, and whatever resolves
//! is a regular file inside the assets root (never the file outside it that
//! a symlink and `..` point at).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use bootlab_http::request_path::{decode, resolve_asset};
use libfuzzer_sys::fuzz_target;

struct Tree {
    root: PathBuf,
    _dir: tempfile::TempDir,
}

fn tree() -> &'static Tree {
    static TREE: OnceLock<Tree> = OnceLock::new();
    TREE.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("sub/deeper")).expect("mkdir");
        std::fs::write(root.join("vmlinuz"), b"k").expect("write");
        std::fs::write(root.join("sub/deeper/initrd.img"), b"i").expect("write");
        std::fs::write(dir.path().join("secret"), b"s").expect("write");
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("out")).expect("symlink");
        std::os::unix::fs::symlink("..", root.join("sub/up")).expect("symlink");
        std::os::unix::fs::symlink("deeper/initrd.img", root.join("sub/in")).expect("symlink");
        let root = root.canonicalize().expect("canonical root");
        Tree { root, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    // Request paths reach the service as ASCII (hyper rejects the rest).
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(decoded) = decode(raw) {
        let b = decoded.as_bytes();
        assert!(
            !b.windows(3).any(|w| w[0] == b'%' && w[1].is_ascii_hexdigit() && w[2].is_ascii_hexdigit()),
            "still encoded after decoding: {decoded:?}"
        );
    }
    let t = tree();
    if let Ok((_, path)) = resolve_asset(&t.root, raw) {
        assert!(path.starts_with(&t.root), "{raw:?} escaped to {path:?}");
        assert!(path.is_file(), "{raw:?} resolved to a non-file {path:?}");
    }
});
