//! Which of a route's targets a new client goes to, among the ones health
//! lets take it.
//!
//! The balancer sees a group's members only by position, and of each only
//! what its policy needs (load and name), and only of the candidates health
//! admitted: it cannot know or change health. Asking is a closure, so a
//! pick allocates nothing.

use std::net::IpAddr;

use crate::config::Balance;

/// What a balancing policy may look at of one candidate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Member<'a> {
    /// Live pipes, for least-conn.
    pub(crate) load: usize,
    /// The configured name, for source-hash: the same across restarts and
    /// re-resolves, unlike the address.
    pub(crate) name: &'a str,
}

/// A balancing mode and its memory (where round-robin goes on from).
pub(crate) struct Balancer {
    mode: Balance,
    /// Where the next round-robin (and least-conn tie) scan starts.
    cursor: usize,
}

impl Balancer {
    pub(crate) fn new(mode: Balance) -> Balancer {
        Balancer { mode, cursor: 0 }
    }

    /// Chooses the position of one of `count` members for a client from
    /// `client_ip`. `candidate(position)` is the member if it may take the
    /// client, `None` if not; no other position is ever returned, and
    /// `None` only when no position is a candidate.
    pub(crate) fn pick<'a>(
        &mut self,
        count: usize,
        client_ip: IpAddr,
        candidate: impl Fn(usize) -> Option<Member<'a>>,
    ) -> Option<usize> {
        let from_cursor = || (0..count).map(|step| (self.cursor + step) % count);
        let position = match self.mode {
            Balance::RoundRobin => from_cursor().find(|&p| candidate(p).is_some()),
            Balance::LeastConn => from_cursor()
                .filter_map(|p| candidate(p).map(|member| (p, member.load)))
                .min_by_key(|&(_, load)| load)
                .map(|(p, _)| p),
            Balance::SourceHash => (0..count)
                .filter_map(|p| {
                    candidate(p).map(|member| (p, rendezvous_score(client_ip, member.name)))
                })
                .max_by_key(|&(_, score)| score)
                .map(|(p, _)| p),
        }?;
        self.cursor = (position + 1) % count;
        Some(position)
    }
}

/// Highest-random-weight hashing: each client IP ranks the targets, and
/// takes its best healthy one. When a target goes down only its own clients
/// move, each to its next best; the rest stay where they were. FNV-1a then
/// a 64-bit finalizer, so the mapping is the same across restarts.
fn rendezvous_score(client_ip: IpAddr, target_name: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let (v4, v6);
    let ip_bytes: &[u8] = match client_ip {
        IpAddr::V4(ip) => {
            v4 = ip.octets();
            &v4
        }
        IpAddr::V6(ip) => {
            v6 = ip.octets();
            &v6
        }
    };
    for byte in ip_bytes.iter().chain(b"/").chain(target_name.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Members `0..loads.len()` with these loads; those in `out` are not
    /// candidates.
    fn pick(balancer: &mut Balancer, loads: &[usize], out: &[usize], client: u8) -> Option<usize> {
        let names: Vec<String> = (0..loads.len()).map(|i| format!("10.0.0.{i}:80")).collect();
        let ip = IpAddr::from([127, 0, 0, client]);
        balancer.pick(loads.len(), ip, |p| {
            (!out.contains(&p)).then(|| Member {
                load: loads[p],
                name: &names[p],
            })
        })
    }

    #[test]
    fn round_robin_takes_each_candidate_in_turn() {
        let mut balancer = Balancer::new(Balance::RoundRobin);
        let picks: Vec<_> = (0..6)
            .map(|_| pick(&mut balancer, &[0; 3], &[], 1))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2].map(Some));
        let picks: Vec<_> = (0..4)
            .map(|_| pick(&mut balancer, &[0; 3], &[1], 1))
            .collect();
        assert_eq!(picks, [0, 2, 0, 2].map(Some));
    }

    #[test]
    fn least_conn_prefers_the_candidate_with_fewest_pipes() {
        let mut balancer = Balancer::new(Balance::LeastConn);
        assert_eq!(pick(&mut balancer, &[2, 1, 0], &[], 1), Some(2));
        assert_eq!(pick(&mut balancer, &[2, 1, 2], &[], 1), Some(1));
        assert_eq!(pick(&mut balancer, &[2, 1, 0], &[2], 1), Some(1));
    }

    #[test]
    fn source_hash_is_stable_and_only_moves_the_clients_of_a_lost_candidate() {
        let mut balancer = Balancer::new(Balance::SourceHash);
        let loads = [0; 3];
        let before: Vec<_> = (1..=200)
            .map(|i| pick(&mut balancer, &loads, &[], i))
            .collect();
        let again: Vec<_> = (1..=200)
            .map(|i| pick(&mut balancer, &loads, &[], i))
            .collect();
        assert_eq!(before, again);
        assert!(
            (0..3).all(|t| before.contains(&Some(t))),
            "every member gets clients"
        );
        for (i, &was) in (1..=200).zip(&before) {
            let now_at = pick(&mut balancer, &loads, &[1], i);
            if was == Some(1) {
                assert_ne!(now_at, Some(1));
            } else {
                assert_eq!(now_at, was, "client {i} moved though its member stayed");
            }
        }
    }

    fn any_mode() -> impl Strategy<Value = Balance> {
        prop_oneof![
            Just(Balance::RoundRobin),
            Just(Balance::LeastConn),
            Just(Balance::SourceHash)
        ]
    }

    proptest! {
        /// Whatever the mode, its memory and the members' loads: a pick is
        /// a candidate, and there is one whenever any member is.
        #[test]
        fn never_picks_outside_the_candidate_set(
            mode in any_mode(),
            rounds in prop::collection::vec(
                (prop::collection::vec((any::<bool>(), 0usize..4), 0..12), any::<u8>()),
                1..20,
            ),
        ) {
            let mut balancer = Balancer::new(mode);
            for (members, client) in rounds {
                let loads: Vec<usize> = members.iter().map(|&(_, load)| load).collect();
                let out: Vec<usize> = (0..members.len()).filter(|&p| !members[p].0).collect();
                let picked = pick(&mut balancer, &loads, &out, client);
                match picked {
                    Some(p) => prop_assert!(p < members.len() && members[p].0, "picked {p} of {members:?}"),
                    None => prop_assert!(members.iter().all(|&(candidate, _)| !candidate)),
                }
            }
        }
    }
}
