//! Boot assets over HTTP with curl and raw sockets: HEAD, ranges, validators,
//! Title-Case header names on the wire, keep-alive, traversal refusals and a
//! sparse file larger than 4 GiB.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use common::{Lab, curl, get, get_text, metric, pattern};

/// Headers of a response printed by `curl -D -` (status line first).
fn header<'a>(dump: &'a str, name: &str) -> Option<&'a str> {
    dump.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[test]
fn head_and_full_get_with_exact_length_and_validators() {
    let lab = Lab::start();
    let out = curl(&["--head", &lab.url("/assets/vmlinuz")]);
    let dump = String::from_utf8(out.stdout).unwrap();
    assert!(dump.starts_with("HTTP/1.1 200 OK\r\n"), "{dump}");
    assert_eq!(header(&dump, "Content-Length"), Some("300000"), "{dump}");
    assert_eq!(header(&dump, "Accept-Ranges"), Some("bytes"), "{dump}");
    assert_eq!(
        header(&dump, "Content-Type"),
        Some("application/octet-stream"),
        "{dump}"
    );
    let etag = header(&dump, "ETag").expect("etag").to_owned();
    let last_modified = header(&dump, "Last-Modified")
        .expect("last-modified")
        .to_owned();

    let (code, body) = get(&[&lab.url("/assets/vmlinuz")]);
    assert_eq!(code, 200);
    assert_eq!(body, pattern(300_000));

    let (code, body) = get(&[
        "-H",
        &format!("If-None-Match: {etag}"),
        &lab.url("/assets/vmlinuz"),
    ]);
    assert_eq!((code, body.len()), (304, 0));
    let (code, _) = get(&[
        "-H",
        &format!("If-Modified-Since: {last_modified}"),
        &lab.url("/assets/vmlinuz"),
    ]);
    assert_eq!(code, 304);
    let (code, _) = get(&["-H", "If-Match: \"other\"", &lab.url("/assets/vmlinuz")]);
    assert_eq!(code, 412);
    // A stale If-Range gets the whole file, a current one the range.
    let (code, body) = get(&[
        "-r",
        "0-9",
        "-H",
        "If-Range: \"old\"",
        &lab.url("/assets/vmlinuz"),
    ]);
    assert_eq!((code, body.len()), (200, 300_000));
    let (code, body) = get(&[
        "-r",
        "0-9",
        "-H",
        &format!("If-Range: {etag}"),
        &lab.url("/assets/vmlinuz"),
    ]);
    assert_eq!((code, body.len()), (206, 10));

    let (code, text) = get_text(&[&lab.url("/assets/small.txt")]);
    assert_eq!((code, text.as_str()), (200, "hello, bootlab\n"));
    let (code, _) = get(&[&lab.url("/assets/missing.img")]);
    assert_eq!(code, 404);
    let (code, _) = get(&[&lab.url("/assets/")]);
    assert_eq!(code, 404);
    let (code, _) = get(&["-X", "POST", &lab.url("/assets/vmlinuz")]);
    assert_eq!(code, 405);
}

#[test]
fn single_multi_and_invalid_ranges() {
    let lab = Lab::start();
    let file = pattern(300_000);
    let url = lab.url("/assets/vmlinuz");

    let out = curl(&["-D", "/dev/stderr", "-r", "100-199", &url]);
    let dump = String::from_utf8_lossy(&out.stderr);
    assert!(
        dump.starts_with("HTTP/1.1 206 Partial Content\r\n"),
        "{dump}"
    );
    assert_eq!(header(&dump, "Content-Range"), Some("bytes 100-199/300000"));
    assert_eq!(header(&dump, "Content-Length"), Some("100"));
    assert_eq!(out.stdout, &file[100..200]);

    let (code, body) = get(&["-r", "-10", &url]);
    assert_eq!((code, body.as_slice()), (206, &file[299_990..]));
    let (code, body) = get(&["-r", "299999-", &url]);
    assert_eq!((code, body.as_slice()), (206, &file[299_999..]));

    // Multi-range: multipart/byteranges with exact parts.
    let out = curl(&["-D", "/dev/stderr", "-r", "0-9,1000-1019,299990-", &url]);
    let dump = String::from_utf8_lossy(&out.stderr);
    assert!(dump.starts_with("HTTP/1.1 206"), "{dump}");
    let ctype = header(&dump, "Content-Type").unwrap();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .unwrap_or_else(|| panic!("{ctype}"));
    assert_eq!(
        header(&dump, "Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        out.stdout.len()
    );
    let body = out.stdout;
    let mut expected = Vec::new();
    for (first, last) in [(0usize, 9usize), (1000, 1019), (299_990, 299_999)] {
        expected.extend_from_slice(
            format!(
                "\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes {first}-{last}/300000\r\n\r\n"
            )
            .as_bytes(),
        );
        expected.extend_from_slice(&file[first..=last]);
    }
    expected.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    assert_eq!(body, expected);

    // Overlapping ranges are merged into one part.
    let (code, body) = get(&["-r", "0-99,50-149", &url]);
    assert_eq!((code, body.as_slice()), (206, &file[0..150]));

    // Invalid and unsatisfiable -> 416 with the length.
    for bad in ["300000-", "abc", "5-1", "-0"] {
        let out = curl(&[
            "-D",
            "/dev/stderr",
            "-H",
            &format!("Range: bytes={bad}"),
            &url,
        ]);
        let dump = String::from_utf8_lossy(&out.stderr);
        assert!(dump.starts_with("HTTP/1.1 416"), "{bad}: {dump}");
        assert_eq!(
            header(&dump, "Content-Range"),
            Some("bytes */300000"),
            "{bad}"
        );
        assert!(out.stdout.is_empty());
    }
    // Too many ranges -> 416.
    let many: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let (code, _) = get(&["-H", &format!("Range: bytes={}", many.join(",")), &url]);
    assert_eq!(code, 416);
    let sixteen: Vec<String> = (0..16)
        .map(|i| format!("{}-{}", i * 10, i * 10 + 1))
        .collect();
    let (code, _) = get(&["-H", &format!("Range: bytes={}", sixteen.join(",")), &url]);
    assert_eq!(code, 206);
    // Another unit: ignored.
    let (code, body) = get(&["-H", "Range: items=0-1", &url]);
    assert_eq!((code, body.len()), (200, 300_000));
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="bad_range"}"#) >= 5);
}

/// Reads one response's head from a raw connection, then its body by
/// Content-Length; returns (head, body).
fn read_response(reader: &mut BufReader<TcpStream>) -> (String, Vec<u8>) {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "connection closed early: {head}"
        );
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap_or_else(|| panic!("no Title-Case Content-Length in {head:?}"))
        .trim()
        .parse()
        .unwrap();
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    (head, body)
}

#[test]
fn title_case_header_names_on_the_wire_and_keep_alive() {
    let lab = Lab::start();
    let stream = TcpStream::connect(lab.addr).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for path in [
        "/assets/small.txt",
        "/boot.ipxe?mac=52:54:00:77:00:10",
        "/assets/vmlinuz",
    ] {
        // GRUB's request, lower-case as it sends it.
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nuser-agent: GRUB 2.06\r\n\r\n"
        )
        .unwrap();
        let (head, body) = read_response(&mut reader);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        for name in ["Content-Length", "Content-Type", "Date"] {
            assert!(
                head.contains(&format!("\r\n{name}: ")),
                "{name} not Title-Case in {head:?}"
            );
        }
        assert!(!head.contains("content-length"), "{head:?}");
        if path.starts_with("/assets/") {
            assert!(head.contains("\r\nAccept-Ranges: bytes\r\n"), "{head:?}");
            assert!(head.contains("\r\nLast-Modified: "), "{head:?}");
            assert!(head.contains("\r\nEtag: "), "{head:?}");
        }
        assert!(!head.contains("Location"), "no redirects: {head:?}");
        assert!(!body.is_empty());
    }
    // HEAD on the same connection: headers only, exact length.
    write!(writer, "HEAD /assets/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut head = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    assert!(head.contains("\r\nContent-Length: 300000\r\n"), "{head:?}");
    // ...and the connection still works afterwards.
    write!(writer, "GET /assets/small.txt HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (_, body) = read_response(&mut reader);
    assert_eq!(body, b"hello, bootlab\n");
}

#[test]
fn traversal_attempts_are_refused() {
    let lab = Lab::start();
    std::fs::write(lab.dir.path().join("secret"), b"TOP SECRET").unwrap();
    std::os::unix::fs::symlink(lab.dir.path().join("secret"), lab.assets.join("escape")).unwrap();
    std::os::unix::fs::symlink("/etc", lab.assets.join("etc-link")).unwrap();
    std::fs::create_dir(lab.assets.join("sub")).unwrap();
    std::os::unix::fs::symlink("../small.txt", lab.assets.join("sub/inside")).unwrap();

    let attempts = [
        ("/assets/../secret", 403),
        ("/assets/sub/../../secret", 403),
        ("/assets/%2e%2e/secret", 403),
        ("/assets/%2E%2E%2Fsecret", 403),
        ("/assets/sub/%2e%2e/%2e%2e/secret", 403),
        ("/assets/..%2fsecret", 403),
        ("/assets/%252e%252e/secret", 400),
        ("/assets/%252e%252e%252fsecret", 400),
        ("/assets/%25252e%25252e/secret", 400),
        ("/assets/..%5csecret", 400),
        ("/assets/%2e%2e%5csecret", 400),
        ("/assets/small.txt%00", 400),
        ("/assets/%c0%ae%c0%ae/secret", 400),
        ("/assets/escape", 403),
        ("/assets/etc-link/passwd", 403),
        ("/assets//etc/passwd", 404),
        ("/assets/%2fetc%2fpasswd", 404),
        ("/assets/%", 400),
    ];
    for (path, want) in attempts {
        let (code, body) = get(&["--path-as-is", &lab.url(path)]);
        assert_eq!(code, want, "{path}: {}", String::from_utf8_lossy(&body));
        assert!(!String::from_utf8_lossy(&body).contains("SECRET"), "{path}");
        assert!(!String::from_utf8_lossy(&body).contains("root:"), "{path}");
    }
    // A symlink that stays inside the root is fine.
    let (code, body) = get(&[&lab.url("/assets/sub/inside")]);
    assert_eq!(
        (code, body.as_slice()),
        (200, b"hello, bootlab\n".as_slice())
    );
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="traversal"}"#) >= 6);
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="escape"}"#) >= 2);
    assert!(metric(&lab, r#"bootlab_http_errors_total{kind="double_encoding"}"#) >= 3);
}

#[test]
fn sparse_file_larger_than_4_gib() {
    let lab = Lab::start();
    let len: u64 = 5 * 1024 * 1024 * 1024 + 123;
    let path = lab.assets.join("big.img");
    {
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(len).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"END-MARKER", len - 10).unwrap();
        f.write_all_at(b"4GiB", 1 << 32).unwrap();
    }
    let out = curl(&["--head", &lab.url("/assets/big.img")]);
    let dump = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        header(&dump, "Content-Length"),
        Some(len.to_string().as_str()),
        "{dump}"
    );

    let (code, body) = get(&["-r", "-10", &lab.url("/assets/big.img")]);
    assert_eq!((code, body.as_slice()), (206, b"END-MARKER".as_slice()));
    let first = (1u64 << 32) - 2;
    let (code, body) = get(&[
        "-r",
        &format!("{first}-{}", first + 7),
        &lab.url("/assets/big.img"),
    ]);
    assert_eq!((code, body.as_slice()), (206, b"\0\x004GiB\0\0".as_slice()));
    // The last 600 MiB streamed in full: bounded memory, exact length.
    let start = len - 600 * 1024 * 1024;
    let out = curl(&[
        "-r",
        &format!("{start}-"),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code} %{size_download}",
        &lab.url("/assets/big.img"),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("206 {}", 600 * 1024 * 1024)
    );
}
