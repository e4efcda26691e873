//! Writes bootlabd's zones as master files and a dnsperf query mix, from an
//! inventory: `zonefile LAB.toml OUTDIR` -> `OUTDIR/<origin>.zone` per zone
//! and `OUTDIR/queries.txt`. `bench/dns.sh` serves the same zones from Knot.

use std::fmt::Write as _;
use std::path::PathBuf;

use bootlab_dns::handler::HandlerConfig;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(lab), Some(out)) = (args.next(), args.next()) else {
        return Err("usage: zonefile LAB.toml OUTDIR".into());
    };
    let inv = bootlab_inventory::load(std::path::Path::new(&lab))?;
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;
    let handler = bootlab_dns::Handler::new(&inv, HandlerConfig::default())?;
    for zone in handler.zones().zones() {
        std::fs::write(out.join(format!("{}.zone", zone.origin)), zone.zone_file())?;
        println!("{}", zone.origin);
    }
    // The query mix: every host (A) and its PTR, the extra records, the apex,
    // wildcard names, some NXDOMAIN and some NODATA.
    let zone = inv.zone();
    let mut q = String::new();
    for r in inv.hosts() {
        let o = r.ip.octets();
        writeln!(q, "{} A", r.fqdn)?;
        writeln!(q, "{}.{}.{}.{}.in-addr.arpa PTR", o[3], o[2], o[1], o[0])?;
    }
    for r in inv.dns_records() {
        let owner = if r.name.is_empty() {
            zone.to_owned()
        } else {
            format!("{}.{zone}", r.name)
        };
        let owner = owner.replace('*', "console-openshift");
        writeln!(q, "{owner} {}", r.data.type_name())?;
    }
    writeln!(q, "{zone} SOA")?;
    writeln!(q, "{zone} NS")?;
    for i in 0..8 {
        writeln!(q, "app{i}.apps.{zone} A")?;
    }
    for i in 0..4 {
        writeln!(q, "missing{i}.{zone} A")?;
    }
    for n in inv.nodes().iter().take(4) {
        writeln!(q, "{} AAAA", n.fqdn)?;
    }
    std::fs::write(out.join("queries.txt"), q)?;
    Ok(())
}
