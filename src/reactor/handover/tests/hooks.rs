//! What the embedder's hooks hear of a pipe another process handed over.

use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, OnceLock};

use mio::Events;

use super::{accept, config, received, until, Loop, Pair, Peer};
use crate::reactor::Reactor;
use crate::share::Share;

/// What the hooks of the adopting loop heard, in order.
#[derive(Clone, Default)]
struct Heard(Arc<std::sync::Mutex<Vec<String>>>);

impl crate::hooks::Hooks for Heard {
    fn pipe_opened(
        &mut self,
        pipe: &crate::hooks::PipeOpened<'_>,
        _: &mut crate::hooks::PipeControl,
    ) {
        let route = pipe.route.unwrap_or("-");
        self.0
            .lock()
            .unwrap()
            .push(format!("opened {} {route}", pipe.id));
    }

    fn connected(&mut self, pipe: &crate::hooks::Connected<'_>, _: &mut crate::hooks::PipeControl) {
        self.0
            .lock()
            .unwrap()
            .push(format!("connected {}", pipe.id));
    }

    fn pipe_closed(&mut self, pipe: &crate::hooks::PipeClosed<'_>) {
        self.0
            .lock()
            .unwrap()
            .push(format!("closed {} {:?}", pipe.id, pipe.reason));
    }
}

#[test]
fn the_hooks_hear_of_an_adopted_pipe_as_of_a_new_one_and_of_its_end_once() {
    let targets = TcpListener::bind("127.0.0.1:0").unwrap();
    targets.set_nonblocking(true).unwrap();
    let target = targets.local_addr().unwrap();
    let mut old = Loop::new(config(target, target));
    let client = TcpStream::connect(old.addr("plain")).unwrap();
    let upstream = accept(&mut old, &targets);
    let id = old.pipes()[0].id;
    let exported = old.reactor.export();
    let heard = Heard::default();
    let share = Share { index: 0, count: 1 };
    let hooks: Box<dyn crate::hooks::Hooks> = Box::new(heard.clone());
    let reactor = Reactor::new(
        config(target, target),
        Some(hooks),
        share,
        Arc::new(OnceLock::new()),
        None,
    )
    .unwrap();
    let mut new = Loop {
        reactor,
        events: Events::with_capacity(16),
    };
    new.reactor.adopt(received(&exported)).unwrap();
    old.reactor.release_exported();
    assert_eq!(
        *heard.0.lock().unwrap(),
        [format!("opened {id} plain"), format!("connected {id}")]
    );
    let mut pairs = [Pair {
        client: Peer::new(client),
        target: Some(Peer::new(upstream)),
    }];
    pairs[0].client.fin_after = true;
    pairs[0].target.as_mut().unwrap().fin_after = true;
    until(&mut [&mut new], &mut pairs, "the end", |loops, _| {
        loops[0].pipes().is_empty()
    });
    let heard = heard.0.lock().unwrap();
    assert_eq!(heard.len(), 3, "{heard:?}");
    assert_eq!(heard[2], format!("closed {id} Clean"));
}
