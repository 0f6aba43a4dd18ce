//! Every record reads back as written; a cut, corrupt or arbitrary record
//! is an error, never a panic.

use std::net::SocketAddr;
use std::time::Duration;

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use super::*;
use crate::operator::TargetState;

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| SocketAddr::from((ip, port))),
        (any::<[u8; 16]>(), any::<u16>(), any::<u32>(), any::<u32>()).prop_map(
            |(ip, port, flow, scope)| {
                SocketAddr::V6(std::net::SocketAddrV6::new(ip.into(), port, flow, scope))
            }
        ),
    ]
}

fn millis() -> impl Strategy<Value = Duration> {
    any::<u32>().prop_map(|ms| Duration::from_millis(u64::from(ms)))
}

fn name() -> impl Strategy<Value = TargetName> {
    ("[a-z]{0,8}", "[a-z0-9.:]{0,16}", any::<u32>()).prop_map(|(route, name, nth)| TargetName {
        route,
        name,
        nth,
    })
}

fn settings() -> impl Strategy<Value = SettingsRecord> {
    (
        (any::<u64>(), any::<u64>(), 0u8..3, any::<u64>()),
        [of(millis()), of(millis()), of(millis()), of(millis())],
        [of(any::<u64>()), of(any::<u64>())],
        [of(any::<u64>()), of(any::<u64>())],
    )
        .prop_map(
            |((buffer_size, low_water, splice, burst), timeouts, pipe_rates, route_rates)| {
                SettingsRecord {
                    buffer_size,
                    low_water,
                    connect_timeout: timeouts[0],
                    idle_timeout: timeouts[1],
                    half_close_timeout: timeouts[2],
                    keepalive: timeouts[3],
                    splice,
                    pipe_rates,
                    route_rates,
                    burst,
                }
            },
        )
}

fn endpoint() -> impl Strategy<Value = EndpointRecord> {
    (any::<u32>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(fd, read_closed, error, limited)| EndpointRecord {
            fd,
            read_closed,
            error,
            limited,
        },
    )
}

fn way_limit() -> impl Strategy<Value = WayLimitRecord> {
    (
        any::<u64>(),
        any::<u64>(),
        of(millis()),
        of(millis()),
        millis(),
    )
        .prop_map(
            |(tokens, rate, wake_in, paused_for, limited)| WayLimitRecord {
                tokens,
                rate,
                wake_in,
                paused_for,
                limited,
            },
        )
}

fn stage() -> impl Strategy<Value = StageRecord> {
    prop_oneof![
        (
            millis(),
            any::<u32>(),
            any::<u32>(),
            vec(name(), 0..3),
            of(addr())
        )
            .prop_map(|(elapsed, attempts, max_attempts, tried, chosen)| {
                StageRecord::Connecting {
                    elapsed,
                    attempts,
                    max_attempts,
                    tried,
                    chosen,
                }
            }),
        (of(millis()), of([of(way_limit()), of(way_limit())])).prop_map(
            |(connect_time, limits)| StageRecord::Open {
                connect_time,
                limits,
            }
        ),
    ]
}

fn buffer() -> impl Strategy<Value = BufferRecord> {
    prop_oneof![
        Just(BufferRecord::Empty),
        vec(any::<u8>(), 0..64).prop_map(BufferRecord::Ring),
        (any::<u32>(), any::<u32>(), any::<u32>())
            .prop_map(|(read, write, len)| BufferRecord::Kernel { read, write, len }),
    ]
}

fn direction() -> impl Strategy<Value = DirectionRecord> {
    (
        (0u8..3, any::<bool>(), any::<bool>(), any::<bool>()),
        (any::<u8>(), any::<u8>(), 0u8..3, any::<u8>()),
        any::<u64>(),
        buffer(),
    )
        .prop_map(
            |(
                (flow, paused, held, read_waits),
                (preamble, preamble_len, mode, full_reads),
                forwarded,
                buffer,
            )| DirectionRecord {
                flow,
                paused,
                held,
                read_waits,
                preamble,
                preamble_len,
                mode,
                full_reads,
                forwarded,
                buffer,
            },
        )
}

fn pipe() -> impl Strategy<Value = PipeRecord> {
    (
        (
            any::<u64>(),
            addr(),
            of("[a-z]{0,8}"),
            of(name()),
            of("[a-z.]{0,12}"),
        ),
        (settings(), endpoint(), endpoint(), stage()),
        [direction(), direction()],
        (of(0u8..2), any::<bool>(), millis(), millis()),
    )
        .prop_map(
            |(
                (id, peer, route, target, server_name),
                (settings, client, upstream, stage),
                directions,
                (first_fin, keepalive_pending, age, idle_for),
            )| PipeRecord {
                id,
                peer,
                route,
                target,
                server_name,
                settings,
                client,
                upstream,
                stage,
                directions,
                first_fin,
                keepalive_pending,
                age,
                idle_for,
            },
        )
}

fn awaiting() -> impl Strategy<Value = AwaitingRecord> {
    (
        (any::<u64>(), "[a-z]{0,8}", any::<u32>()),
        (addr(), addr()),
        (any::<bool>(), any::<bool>(), of(millis())),
    )
        .prop_map(
            |((id, route, fd), (peer, listener), (read_closed, inspect, timeout_in))| {
                AwaitingRecord {
                    id,
                    route,
                    fd,
                    peer,
                    listener,
                    read_closed,
                    inspect,
                    timeout_in,
                }
            },
        )
}

fn inspecting() -> impl Strategy<Value = InspectingRecord> {
    (
        (any::<u64>(), "[a-z]{0,8}", any::<u32>()),
        (addr(), addr(), addr()),
        (any::<bool>(), any::<bool>(), of(millis())),
    )
        .prop_map(
            |((id, route, fd), (listener, peer, local), (local_from_header, read_closed, t))| {
                InspectingRecord {
                    id,
                    route,
                    fd,
                    listener,
                    peer,
                    local,
                    local_from_header,
                    read_closed,
                    timeout_in: t,
                }
            },
        )
}

fn pooled() -> impl Strategy<Value = PooledRecord> {
    (name(), any::<u32>(), millis()).prop_map(|(target, fd, idle_for)| PooledRecord {
        target,
        fd,
        idle_for,
    })
}

fn record() -> impl Strategy<Value = Record> {
    prop_oneof![
        pipe().prop_map(|p| Record::Pipe(Box::new(p))),
        awaiting().prop_map(Record::Awaiting),
        inspecting().prop_map(Record::Inspecting),
        pooled().prop_map(Record::Pooled),
    ]
}

fn health() -> impl Strategy<Value = HealthRecord> {
    let state = prop_oneof![
        Just(HealthState::Up),
        (millis(), millis()).prop_map(|(left, cooldown)| HealthState::Down { left, cooldown }),
        millis().prop_map(|cooldown| HealthState::Trial { cooldown }),
    ];
    let operator = prop_oneof![
        Just(TargetState::Ready),
        Just(TargetState::Drain),
        Just(TargetState::Maint),
    ];
    (
        name(),
        state,
        any::<u32>(),
        operator,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(target, state, consecutive_failures, operator, weight, configured_weight)| {
                HealthRecord {
                    target,
                    state,
                    consecutive_failures,
                    operator,
                    weight,
                    configured_weight,
                }
            },
        )
}

proptest! {
    #[test]
    fn every_record_reads_back_as_written(record in record()) {
        let bytes = record.encode();
        prop_assert_eq!(Record::decode(&bytes)?, record);
    }

    #[test]
    fn a_cut_record_is_an_error_never_a_panic(
        record in record(),
        cut in any::<prop::sample::Index>(),
    ) {
        let bytes = record.encode();
        let short = &bytes[..cut.index(bytes.len())];
        prop_assert!(Record::decode(short).is_err());
    }

    #[test]
    fn a_record_with_trailing_bytes_is_an_error(record in record(), extra in 1u8..) {
        let mut bytes = record.encode();
        bytes.push(extra);
        prop_assert!(Record::decode(&bytes).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Record::decode(&bytes);
        let _ = UpstreamRecord::decode(&bytes);
        let parcel = Parcel { record: bytes, fds: vec![0, 1] };
        let _ = parcel.pipe_id();
        let _ = Record::of_parcel(&parcel);
    }

    #[test]
    fn a_corrupted_record_is_an_error_or_another_record_never_a_panic(
        record in record(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = record.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = Record::decode(&bytes);
    }

    #[test]
    fn the_upstream_record_reads_back_and_a_cut_one_is_an_error(
        health in vec(health(), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let record = UpstreamRecord { health };
        let bytes = record.encode();
        prop_assert_eq!(UpstreamRecord::decode(&bytes)?, record.clone());
        let short = &bytes[..cut.index(bytes.len())];
        // Cut to nothing, it is an empty record: a bundle without one.
        if !short.is_empty() {
            prop_assert!(UpstreamRecord::decode(short).is_err());
        }
    }

    #[test]
    fn a_parcel_names_its_id_and_regrouping_sends_it_to_its_owner(
        records in vec(record(), 0..12),
        workers in 1usize..5,
    ) {
        let parcels: Vec<Parcel<i32>> = records
            .iter()
            .map(|r| Parcel { record: r.encode(), fds: Vec::new() })
            .collect();
        for (parcel, record) in parcels.iter().zip(&records) {
            let id = match record {
                Record::Pipe(p) => Some(p.id),
                Record::Awaiting(a) => Some(a.id),
                Record::Inspecting(i) => Some(i.id),
                Record::Pooled(_) => None,
            };
            prop_assert_eq!(parcel.pipe_id(), id);
        }
        let bundle = Bundle { parcels, upstream: vec![7] };
        let total = records.len();
        let regrouped = regroup(vec![bundle], workers);
        prop_assert_eq!(regrouped.len(), workers);
        prop_assert_eq!(regrouped.iter().map(|b| b.parcels.len()).sum::<usize>(), total);
        for (worker, bundle) in regrouped.iter().enumerate() {
            prop_assert_eq!(&bundle.upstream, &vec![7]);
            for parcel in &bundle.parcels {
                if let Some(id) = parcel.pipe_id() {
                    prop_assert_eq!(crate::share::owner_of(id, workers), worker);
                }
            }
        }
    }
}

#[test]
fn a_record_must_name_each_descriptor_once() {
    let record = Record::Pooled(PooledRecord {
        target: TargetName {
            route: "r".into(),
            name: "t".into(),
            nth: 0,
        },
        fd: 1,
        idle_for: Duration::ZERO,
    });
    let parcel = Parcel {
        record: record.encode(),
        fds: vec![10],
    };
    assert!(matches!(
        Record::of_parcel(&parcel),
        Err(HandoverError::Descriptors(_))
    ));
    let parcel = Parcel {
        record: record.encode(),
        fds: vec![10, 11],
    };
    assert!(Record::of_parcel(&parcel).is_err(), "descriptor 0 unnamed");
}

#[test]
fn an_unknown_kind_is_refused() {
    assert!(matches!(
        Record::decode(&[9, 0, 0]),
        Err(HandoverError::Record(_))
    ));
}
