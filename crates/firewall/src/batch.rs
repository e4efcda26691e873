//! The `nftables` crate's JSON batch for a [`Ruleset`]: one document = one
//! kernel transaction (`nft -j -f -`), so it applies entirely or not at all.
//!
//! [`apply_batch`] replaces the table's *rules* and keeps its *state*: it
//! flushes and deletes every chain (chains hold no state) and re-creates the
//! wanted ones in order, deletes only the sets and counters the new ruleset
//! does not have (or whose definition changed), and creates only the missing
//! ones — so learned set elements and counter values survive a re-apply
//! (SIGHUP).

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;
use nftables::batch::Batch;
use nftables::expr::{
    CT, Elem, Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix, SetItem,
};
use nftables::schema::{self, NfListObject, Nftables, SetFlag, SetType, SetTypeValue};
use nftables::stmt::{self, JumpTarget, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::live::TableState;
use crate::ruleset::{
    Action, AddressSet, Chain, ChainKind, DENIED_SET_SIZE, DENIED_SET_TIMEOUT_SECS, Hook,
    HookPoint, Match, Rule, Ruleset, SetKind, TABLE_NAME, Verdict,
};

const FAMILY: NfFamily = NfFamily::INet;

fn table() -> schema::Table<'static> {
    schema::Table {
        family: FAMILY,
        name: TABLE_NAME.into(),
        handle: None,
    }
}

fn chain_ref(name: &str) -> schema::Chain<'static> {
    schema::Chain {
        family: FAMILY,
        table: TABLE_NAME.into(),
        name: name.to_owned().into(),
        ..Default::default()
    }
}

fn set_ref(name: &str) -> schema::Set<'static> {
    schema::Set {
        family: FAMILY,
        table: TABLE_NAME.into(),
        name: name.to_owned().into(),
        ..Default::default()
    }
}

fn set_def(set: &AddressSet) -> schema::Set<'static> {
    let mut def = set_ref(&set.name);
    match set.kind {
        SetKind::Addresses => {
            def.set_type = SetTypeValue::Single(SetType::Ipv4Addr);
            def.flags = Some(HashSet::from([SetFlag::Timeout]));
        }
        SetKind::Endpoints => {
            def.set_type = SetTypeValue::Concatenated(Cow::Borrowed(&[
                SetType::Ipv4Addr,
                SetType::InetProto,
                SetType::InetService,
            ]));
            def.flags = Some(HashSet::from([SetFlag::Timeout]));
            def.timeout = Some(DENIED_SET_TIMEOUT_SECS);
            def.size = Some(DENIED_SET_SIZE);
        }
    }
    def
}

fn counter_def(name: &str) -> schema::Counter<'static> {
    schema::Counter {
        family: FAMILY,
        table: TABLE_NAME.into(),
        name: name.to_owned().into(),
        handle: None,
        packets: None,
        bytes: None,
    }
}

fn hook_parts(h: &Hook) -> (NfChainType, NfHook, NfChainPolicy) {
    let kind = match h.kind {
        ChainKind::Filter => NfChainType::Filter,
        ChainKind::Nat => NfChainType::NAT,
    };
    let point = match h.point {
        HookPoint::Input => NfHook::Input,
        HookPoint::Forward => NfHook::Forward,
        HookPoint::Postrouting => NfHook::Postrouting,
    };
    let policy = match h.policy {
        Verdict::Accept => NfChainPolicy::Accept,
        Verdict::Drop => NfChainPolicy::Drop,
    };
    (kind, point, policy)
}

fn chain_def(c: &Chain) -> schema::Chain<'static> {
    let mut def = chain_ref(&c.name);
    if let Some(h) = &c.hook {
        let (kind, point, policy) = hook_parts(h);
        def._type = Some(kind);
        def.hook = Some(point);
        def.prio = Some(h.priority);
        def.policy = Some(policy);
    }
    def
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(stmt::Match { left, right, op })
}

fn network(n: &Ipv4Net) -> Expression<'static> {
    let addr = Expression::String(n.addr().to_string().into());
    if n.prefix_len() == 32 {
        addr
    } else {
        Expression::Named(NamedExpression::Prefix(Prefix {
            addr: Box::new(addr),
            len: u32::from(n.prefix_len()),
        }))
    }
}

fn networks(nets: &[Ipv4Net]) -> Expression<'static> {
    match nets {
        [n] => network(n),
        _ => Expression::Named(NamedExpression::Set(
            nets.iter().map(|n| SetItem::Element(network(n))).collect(),
        )),
    }
}

fn port(p: u16) -> Expression<'static> {
    Expression::Number(u32::from(p))
}

fn match_statement(m: &Match) -> Statement<'static> {
    let op = |negated: bool| if negated { Operator::NEQ } else { Operator::EQ };
    match m {
        Match::InInterface { name, negated } => matches(
            meta(MetaKey::Iifname),
            op(*negated),
            Expression::String(name.clone().into()),
        ),
        Match::OutInterface { name, negated } => matches(
            meta(MetaKey::Oifname),
            op(*negated),
            Expression::String(name.clone().into()),
        ),
        Match::CtState(states) => matches(
            Expression::Named(NamedExpression::CT(CT {
                key: "state".into(),
                family: None,
                dir: None,
            })),
            Operator::IN,
            Expression::List(
                states
                    .iter()
                    .map(|s| Expression::String(s.as_str().into()))
                    .collect(),
            ),
        ),
        Match::EtherSource(mac) => matches(
            payload("ether", "saddr"),
            Operator::EQ,
            Expression::String(mac.to_string().into()),
        ),
        Match::IpSource(nets) => matches(payload("ip", "saddr"), Operator::EQ, networks(nets)),
        Match::IpDestination(nets) => matches(payload("ip", "daddr"), Operator::EQ, networks(nets)),
        Match::IpDestinationInSet(set) => matches(
            payload("ip", "daddr"),
            Operator::EQ,
            Expression::String(format!("@{set}").into()),
        ),
        Match::UdpSourcePort(p) => matches(payload("udp", "sport"), Operator::EQ, port(*p)),
        Match::UdpDestinationPort(p) => matches(payload("udp", "dport"), Operator::EQ, port(*p)),
        Match::TcpDestinationPort(p) => matches(payload("tcp", "dport"), Operator::EQ, port(*p)),
        Match::IcmpEchoRequest => matches(
            payload("icmp", "type"),
            Operator::EQ,
            Expression::String("echo-request".into()),
        ),
        Match::Icmpv6 => matches(
            meta(MetaKey::L4proto),
            Operator::EQ,
            Expression::String("ipv6-icmp".into()),
        ),
        Match::TcpOrUdp => matches(
            meta(MetaKey::L4proto),
            Operator::EQ,
            Expression::Named(NamedExpression::Set(vec![
                SetItem::Element(Expression::String("tcp".into())),
                SetItem::Element(Expression::String("udp".into())),
            ])),
        ),
    }
}

fn rule_def(chain: &str, r: &Rule) -> schema::Rule<'static> {
    let mut expr: Vec<Statement<'static>> = r.matches.iter().map(match_statement).collect();
    if let Some(c) = &r.counter {
        expr.push(Statement::Counter(stmt::Counter::Named(c.clone().into())));
    }
    expr.push(match &r.action {
        Action::Verdict(Verdict::Accept) => Statement::Accept(None),
        Action::Verdict(Verdict::Drop) => Statement::Drop(None),
        Action::Jump(target) => Statement::Jump(JumpTarget {
            target: target.clone().into(),
        }),
        Action::Masquerade => Statement::Masquerade(None),
        Action::RecordEndpoint(set) => Statement::Set(stmt::Set {
            op: stmt::SetOp::Update,
            elem: Expression::Named(NamedExpression::Concat(vec![
                payload("ip", "daddr"),
                meta(MetaKey::L4proto),
                payload("th", "dport"),
            ])),
            set: format!("@{set}").into(),
        }),
    });
    schema::Rule {
        family: FAMILY,
        table: TABLE_NAME.into(),
        chain: chain.to_owned().into(),
        expr: Cow::Owned(expr),
        handle: None,
        index: None,
        comment: r.comment.clone().map(Cow::Owned),
    }
}

/// The batch that makes the table equal to `desired`, given what the kernel
/// holds now (`current`, empty when the table does not exist).
pub fn apply_batch(desired: &Ruleset, current: &TableState) -> Nftables<'static> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(table()));
    // 1. No rule survives; this also drops every reference to chains and sets.
    for live in &current.chains {
        b.add_cmd(schema::NfCmd::Flush(schema::FlushObject::Chain(chain_ref(
            &live.name,
        ))));
    }
    // 2. Chains hold no state: all are re-created, in the wanted order.
    for live in &current.chains {
        b.delete(NfListObject::Chain(chain_ref(&live.name)));
    }
    // 3. Sets and counters that are gone or changed shape (their state goes too).
    let mut kept_sets = Vec::new();
    for live in &current.sets {
        let keep = desired.sets.iter().any(|want| {
            want.name == live.name
                && live.key_type == want.kind.key_type()
                && live.flags.iter().any(|f| f == "timeout")
        });
        if keep {
            kept_sets.push(live.name.as_str());
        } else {
            b.delete(NfListObject::Set(Box::new(set_ref(&live.name))));
        }
    }
    for live in &current.counters {
        if !desired.counters.iter().any(|c| c.name == live.name) {
            b.delete(NfListObject::Counter(counter_def(&live.name)));
        }
    }
    // 4. What is missing. Kept sets and counters are not re-added: they keep
    // their elements and values untouched (and nft adds flags of its own to
    // a set, e.g. `dynamic` for one the packet path updates, so a re-`add`
    // with our definition would not even match).
    for c in &desired.counters {
        if !current.counters.iter().any(|live| live.name == c.name) {
            b.add(NfListObject::Counter(counter_def(&c.name)));
        }
    }
    for s in &desired.sets {
        if !kept_sets.contains(&s.name.as_str()) {
            b.add(NfListObject::Set(Box::new(set_def(s))));
        }
    }
    for c in &desired.chains {
        b.add(NfListObject::Chain(chain_def(c)));
    }
    for c in &desired.chains {
        for r in &c.rules {
            b.add(NfListObject::Rule(rule_def(&c.name, r)));
        }
    }
    b.to_nftables()
}

/// The batch that removes the table whether or not it exists (`add` then
/// `delete` in one transaction; nft 1.0.6 has no `destroy`).
pub fn remove_batch() -> Nftables<'static> {
    let mut b = Batch::new();
    b.add(NfListObject::Table(table()));
    b.delete(NfListObject::Table(table()));
    b.to_nftables()
}

/// Whole seconds for an element timeout, at least one.
pub fn timeout_secs(ttl: Duration) -> u32 {
    u32::try_from(ttl.as_secs().max(1)).unwrap_or(u32::MAX)
}

fn element(addr: Ipv4Addr, timeout: Option<u32>) -> schema::Element<'static> {
    let val = Expression::String(addr.to_string().into());
    let elem = match timeout {
        None => val,
        Some(t) => Expression::Named(NamedExpression::Elem(Elem {
            val: Box::new(val),
            timeout: Some(t),
            expires: None,
            comment: None,
            counter: None,
        })),
    };
    schema::Element {
        family: FAMILY,
        table: TABLE_NAME.into(),
        name: crate::ruleset::LEARNED_SET.into(),
        elem: Cow::Owned(vec![elem]),
    }
}

/// The batch that (re)sets each address's timeout in the learned set: `add`
/// (no-op if present), `delete`, `add` with the timeout. Without the delete
/// an existing element would keep its old expiry.
pub fn learn_batch(entries: &[(Ipv4Addr, Duration)]) -> Nftables<'static> {
    let mut b = Batch::new();
    for &(addr, ttl) in entries {
        b.add(NfListObject::Element(element(addr, None)));
        b.delete(NfListObject::Element(element(addr, None)));
        b.add(NfListObject::Element(element(
            addr,
            Some(timeout_secs(ttl)),
        )));
    }
    b.to_nftables()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::{CounterValue, LiveChain, LiveSet};
    use crate::ruleset::NamedCounter;

    fn commands(n: &Nftables<'_>) -> Vec<String> {
        n.objects
            .iter()
            .map(|o| {
                let v = serde_json::to_value(o).unwrap();
                let (cmd, body) = v.as_object().unwrap().iter().next().unwrap();
                let (kind, obj) = body.as_object().unwrap().iter().next().unwrap();
                format!(
                    "{cmd} {kind} {}",
                    obj.get("name").and_then(|n| n.as_str()).unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn reapply_keeps_wanted_state_and_drops_the_rest() {
        let desired = Ruleset {
            counters: vec![NamedCounter {
                name: "keep".into(),
                description: String::new(),
            }],
            sets: vec![AddressSet {
                name: "learned_destinations".into(),
                kind: SetKind::Addresses,
            }],
            chains: vec![],
        };
        let current = TableState {
            chains: vec![LiveChain {
                name: "old".into(),
                hook: None,
            }],
            sets: vec![
                LiveSet {
                    name: "learned_destinations".into(),
                    key_type: "ipv4_addr".into(),
                    flags: vec!["timeout".into()],
                    elements: vec![],
                    endpoints: vec![],
                },
                LiveSet {
                    name: "stale".into(),
                    key_type: "ipv4_addr".into(),
                    flags: vec![],
                    elements: vec![],
                    endpoints: vec![],
                },
            ],
            counters: vec![
                CounterValue {
                    name: "keep".into(),
                    packets: 1,
                    bytes: 2,
                },
                CounterValue {
                    name: "gone".into(),
                    packets: 1,
                    bytes: 2,
                },
            ],
            rule_count: 0,
        };
        assert_eq!(
            commands(&apply_batch(&desired, &current)),
            [
                "add table bootlab",
                "flush chain old",
                "delete chain old",
                "delete set stale",
                "delete counter gone",
            ]
        );
    }

    #[test]
    fn a_set_whose_shape_changed_is_recreated() {
        let desired = Ruleset {
            counters: vec![],
            sets: vec![AddressSet {
                name: "learned_destinations".into(),
                kind: SetKind::Addresses,
            }],
            chains: vec![],
        };
        let current = TableState {
            sets: vec![LiveSet {
                name: "learned_destinations".into(),
                key_type: "ipv4_addr".into(),
                flags: vec!["interval".into()],
                elements: vec![],
                endpoints: vec![],
            }],
            ..Default::default()
        };
        assert_eq!(
            commands(&apply_batch(&desired, &current)),
            [
                "add table bootlab",
                "delete set learned_destinations",
                "add set learned_destinations",
            ]
        );
    }
}
