use super::*;
use proptest::prelude::*;

/// Members `0..loads.len()` of weight 1 with these loads; those in `out`
/// are not candidates.
fn pick(balancer: &mut Balancer, loads: &[usize], out: &[usize], client: u8) -> Option<usize> {
    let weights = vec![1; loads.len()];
    pick_weighted(
        balancer,
        loads,
        &weights,
        out,
        IpAddr::from([127, 0, 0, client]),
    )
}

/// Members with these loads and weights; those in `out` (and those of
/// weight 0) are not candidates.
fn pick_weighted(
    balancer: &mut Balancer,
    loads: &[usize],
    weights: &[u32],
    out: &[usize],
    ip: IpAddr,
) -> Option<usize> {
    let names: Vec<String> = (0..loads.len()).map(|i| format!("10.0.0.{i}:80")).collect();
    balancer.pick(loads.len(), ip, |p| {
        (!out.contains(&p) && weights[p] > 0).then(|| Member {
            load: loads[p],
            name: &names[p],
            weight: weights[p],
        })
    })
}

fn client(n: u32) -> IpAddr {
    IpAddr::from(n.to_be_bytes())
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
fn smooth_round_robin_spreads_the_heavy_target_s_picks() {
    let mut balancer = Balancer::new(Balance::RoundRobin);
    let ip = client(1);
    let picks: Vec<_> = (0..8)
        .map(|_| pick_weighted(&mut balancer, &[0; 2], &[3, 1], &[], ip).unwrap())
        .collect();
    // nginx's order for weights 3 and 1: never three in a row within a
    // cycle, the light one in the middle.
    assert_eq!(picks, [0, 0, 1, 0, 0, 0, 1, 0]);
}

#[test]
fn least_conn_prefers_the_candidate_with_fewest_pipes() {
    let mut balancer = Balancer::new(Balance::LeastConn);
    assert_eq!(pick(&mut balancer, &[2, 1, 0], &[], 1), Some(2));
    assert_eq!(pick(&mut balancer, &[2, 1, 2], &[], 1), Some(1));
    assert_eq!(pick(&mut balancer, &[2, 1, 0], &[2], 1), Some(1));
}

#[test]
fn least_conn_divides_live_pipes_by_weight() {
    let mut balancer = Balancer::new(Balance::LeastConn);
    let ip = client(1);
    // 2 pipes on weight 3 is less loaded than 1 on weight 1.
    assert_eq!(
        pick_weighted(&mut balancer, &[2, 1], &[3, 1], &[], ip),
        Some(0)
    );
    assert_eq!(
        pick_weighted(&mut balancer, &[4, 1], &[3, 1], &[], ip),
        Some(1)
    );
    // Equal loads per weight: the tie goes by weight, 3 to 1.
    let mut balancer = Balancer::new(Balance::LeastConn);
    let picks: Vec<_> = (0..400)
        .map(|_| pick_weighted(&mut balancer, &[0, 0], &[3, 1], &[], ip).unwrap())
        .collect();
    assert_eq!(picks.iter().filter(|&&p| p == 0).count(), 300);
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

#[test]
fn source_hash_splits_clients_by_weight() {
    let mut balancer = Balancer::new(Balance::SourceHash);
    let picks: Vec<usize> = (0..20_000)
        .map(|n| pick_weighted(&mut balancer, &[0; 2], &[3, 1], &[], client(n)).unwrap())
        .collect();
    let heavy = picks.iter().filter(|&&p| p == 0).count() as f64 / picks.len() as f64;
    assert!(
        (heavy - 0.75).abs() < 0.02,
        "the weight-3 member got {heavy}"
    );
}

fn any_mode() -> impl Strategy<Value = Balance> {
    prop_oneof![
        Just(Balance::RoundRobin),
        Just(Balance::LeastConn),
        Just(Balance::SourceHash)
    ]
}

/// The longest run of `member` in `picks`.
fn longest_run(picks: &[usize], member: usize) -> usize {
    let (mut longest, mut run) = (0, 0);
    for &p in picks {
        run = if p == member { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    longest
}

proptest! {
    /// Whatever the mode, its memory, the members' loads and weights: a
    /// pick is a candidate, and there is one whenever any member is.
    #[test]
    fn never_picks_outside_the_candidate_set(
        mode in any_mode(),
        rounds in prop::collection::vec(
            (prop::collection::vec((any::<bool>(), 0usize..4, 0u32..5), 0..12), any::<u32>()),
            1..20,
        ),
    ) {
        let mut balancer = Balancer::new(mode);
        for (members, ip) in rounds {
            let loads: Vec<usize> = members.iter().map(|&(_, load, _)| load).collect();
            let weights: Vec<u32> = members.iter().map(|&(_, _, w)| w).collect();
            let out: Vec<usize> = (0..members.len()).filter(|&p| !members[p].0).collect();
            let picked = pick_weighted(&mut balancer, &loads, &weights, &out, client(ip));
            let is_candidate = |p: usize| members[p].0 && members[p].2 > 0;
            match picked {
                Some(p) => prop_assert!(p < members.len() && is_candidate(p), "picked {p} of {members:?}"),
                None => prop_assert!((0..members.len()).all(|p| !is_candidate(p))),
            }
        }
    }

    /// Smooth weighted round-robin: over whole cycles each member gets
    /// exactly its weight's share, over any prefix it is never more than
    /// one pick from its share, and it is never picked more than
    /// `ceil(w / w')` times in a row (`w'` the heaviest other weight).
    #[test]
    fn smooth_round_robin_gives_exact_shares_without_bursts(
        weights in prop::collection::vec(1u32..20, 2..6),
        cycles in 1usize..4,
    ) {
        let mut balancer = Balancer::new(Balance::RoundRobin);
        let total: u32 = weights.iter().sum();
        let loads = vec![0; weights.len()];
        let n = total as usize * cycles;
        let picks: Vec<usize> = (0..n)
            .map(|_| pick_weighted(&mut balancer, &loads, &weights, &[], client(1)).unwrap())
            .collect();
        for (member, &weight) in weights.iter().enumerate() {
            let got = picks.iter().filter(|&&p| p == member).count();
            prop_assert_eq!(got, weight as usize * cycles);
            for prefix in 1..=n {
                let got = picks[..prefix].iter().filter(|&&p| p == member).count() as f64;
                let share = prefix as f64 * f64::from(weight) / f64::from(total);
                prop_assert!((got - share).abs() < 1.0 + 1e-9, "member {member} prefix {prefix}: {got} vs {share}");
            }
            let heaviest_other = weights.iter().enumerate()
                .filter(|&(i, _)| i != member).map(|(_, &w)| w).max().unwrap();
            let bound = weight.div_ceil(heaviest_other) as usize;
            prop_assert!(longest_run(&picks, member) <= bound,
                "member {member} of {weights:?} ran {} > {bound}: {picks:?}", longest_run(&picks, member));
        }
    }

    /// Weighted rendezvous hashing: changing one member's weight moves
    /// only clients to it (if heavier) or from it (if lighter).
    #[test]
    fn a_weight_change_moves_only_clients_to_or_from_that_member(
        weights in prop::collection::vec(1u32..10, 2..6),
        which in any::<prop::sample::Index>(),
        new_weight in 1u32..10,
        ips in prop::collection::vec(any::<u32>(), 50),
    ) {
        let member = which.index(weights.len());
        let mut changed = weights.clone();
        changed[member] = new_weight;
        let mut balancer = Balancer::new(Balance::SourceHash);
        let loads = vec![0; weights.len()];
        for ip in ips {
            let before = pick_weighted(&mut balancer, &loads, &weights, &[], client(ip)).unwrap();
            let after = pick_weighted(&mut balancer, &loads, &changed, &[], client(ip)).unwrap();
            if before != after {
                if new_weight > weights[member] {
                    prop_assert_eq!(after, member, "a client moved to a member whose weight did not change");
                } else {
                    prop_assert_eq!(before, member, "a client left a member whose weight did not change");
                }
            }
        }
    }
}
