//! The installer ISO reader (`bootlab_bootlab::iso`, over hadris-iso's
//! parser): volume descriptors, directory records of the Joliet and the
//! primary tree, file extents. The input is the image after its 32 KiB
//! system area (always zeros here), so the seeds stay small. No panic on
//! any input; the copy is bounded by the input.
#![no_main]

use std::io::Cursor;
use std::path::Path;

use bootlab_bootlab::iso::{INITRD, Iso, KERNEL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut image = vec![0u8; 16 * 2048];
    image.extend_from_slice(data);
    let Ok(mut iso) = Iso::from_reader(Path::new("fuzz.iso"), Cursor::new(image)) else {
        return;
    };
    for inner in [KERNEL, INITRD, "images", "a/../b"] {
        let _ = iso.copy_to(inner, &mut std::io::sink());
    }
});
