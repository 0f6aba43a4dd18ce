//! Which of a route's targets a new client goes to, among the ones health
//! and the operator let take it, by weight.
//!
//! The balancer sees a group's members only by position, and of each only
//! what its policy needs (load, name, weight), and only of the candidates
//! health and the operator admitted: it cannot know or change either.
//! Asking is a closure, so a pick allocates nothing (but the round-robin
//! memory, once per group size).
//!
//! Every mode weighs its members:
//! - round-robin is nginx's smooth weighted round-robin: over any run of
//!   picks each member gets its share within one pick, with no burst (a
//!   member of weight `w` is picked at most `ceil(w / w')` times in a row,
//!   `w'` the heaviest other candidate's weight);
//! - least-conn takes the lowest live pipes ÷ weight, ties going by smooth
//!   weighted round-robin (so short connections, which leave every load at
//!   0, still split by weight);
//! - source-hash is weighted rendezvous hashing: each client IP scores each
//!   member `-weight / ln(h)`, `h` in (0, 1) a hash of the IP and the
//!   name, and takes the best; a weight change moves only the clients
//!   that must move, to or from that member.

use std::cmp::Ordering;
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
    /// Its share against the other candidates'; above 0 for a candidate
    /// (0 is read as 1, should one slip through).
    pub(crate) weight: u32,
}

impl Member<'_> {
    fn weight(&self) -> u64 {
        u64::from(self.weight.max(1))
    }
}

/// A balancing mode and its memory (the smooth round-robin's current
/// weights, by position).
pub(crate) struct Balancer {
    mode: Balance,
    /// nginx's `current_weight` of each position: grows by the member's
    /// weight each pick it is a candidate, and drops by the candidates'
    /// total when it is picked.
    current: Vec<i64>,
    /// A digest of the candidates (positions and weights) at the last
    /// pick: when they change, the current weights start over.
    candidates: u64,
}

impl Balancer {
    pub(crate) fn new(mode: Balance) -> Balancer {
        Balancer {
            mode,
            current: Vec::new(),
            candidates: 0,
        }
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
        match self.mode {
            Balance::RoundRobin => self.smooth(count, &candidate, true),
            Balance::LeastConn => {
                let least = (0..count)
                    .filter_map(&candidate)
                    .min_by(|a, b| by_load(a, b))?;
                // The tied change with every load: the current weights run
                // on, so that ties rotate.
                let tied = |p| candidate(p).filter(|m| by_load(m, &least) == Ordering::Equal);
                self.smooth(count, &tied, false)
            }
            Balance::SourceHash => (0..count)
                .filter_map(|p| {
                    candidate(p).map(|member| (p, rendezvous_score(client_ip, &member)))
                })
                .max_by(|(_, a), (_, b)| a.total_cmp(b))
                .map(|(p, _)| p),
        }
    }

    /// Smooth weighted round-robin (nginx's): every candidate's current
    /// weight grows by its weight; the highest is picked (the first, of
    /// equals) and drops by the candidates' total.
    ///
    /// Unlike nginx, for round-robin (`start_over_on_change`) the current
    /// weights start over whenever the set of candidates or a weight
    /// changes (a target went down or came back, was
    /// drained, reweighted, or a failover skips the one tried): a member
    /// that was out keeps no debt or credit from before, so the split after
    /// the change is the weights' from its first pick, and the first
    /// member in config order is offered the first client (a target back
    /// from its cooldown makes its trial at once).
    fn smooth<'a>(
        &mut self,
        count: usize,
        candidate: &dyn Fn(usize) -> Option<Member<'a>>,
        start_over_on_change: bool,
    ) -> Option<usize> {
        let digest = if start_over_on_change {
            digest(count, candidate)
        } else {
            self.candidates
        };
        if self.current.len() != count || digest != self.candidates {
            self.current.clear();
            self.current.resize(count, 0);
            self.candidates = digest;
        }
        let mut total: i64 = 0;
        let mut best: Option<usize> = None;
        for position in 0..count {
            let Some(member) = candidate(position) else {
                continue;
            };
            // At most MAX_WEIGHT each: no sum of them comes near overflow.
            let weight = member.weight() as i64;
            self.current[position] += weight;
            total += weight;
            if best.map_or(true, |b| self.current[position] > self.current[b]) {
                best = Some(position);
            }
        }
        let best = best?;
        self.current[best] -= total;
        Some(best)
    }
}

/// FNV-1a of the candidates' positions and weights (never 0, the
/// balancer's initial value, in practice).
fn digest<'a>(count: usize, candidate: &dyn Fn(usize) -> Option<Member<'a>>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for position in 0..count {
        if let Some(member) = candidate(position) {
            for word in [position as u64, member.weight()] {
                hash ^= word;
                hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
    }
    hash
}

/// Orders members by live pipes ÷ weight, without division.
fn by_load(a: &Member<'_>, b: &Member<'_>) -> Ordering {
    (a.load as u128 * u128::from(b.weight())).cmp(&(b.load as u128 * u128::from(a.weight())))
}

/// Weighted highest-random-weight hashing: each client IP scores each
/// member `-weight / ln(h)`, `h` a hash of the IP and the member's name
/// mapped into (0, 1), and takes its best. When a member goes, or its
/// weight changes, the other members' scores stay: only clients whose best
/// it was (or becomes) move. FNV-1a then a 64-bit finalizer, so the
/// mapping is the same across restarts.
fn rendezvous_score(client_ip: IpAddr, member: &Member<'_>) -> f64 {
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
    for byte in ip_bytes.iter().chain(b"/").chain(member.name.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    // The top 53 bits, as a float strictly inside (0, 1).
    let unit = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -(member.weight() as f64) / unit.ln()
}

#[cfg(test)]
mod tests;
