//! Helpers for the tests of the library API: a forwarder on a thread of
//! its own, and hooks that record every event so a test can wait for one
//! and check the order.
#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tcpipe::{
    Builder, CloseReason, Config, Connected, Direction, Forwarder, Handle, Hooks, PipeClosed,
    PipeControl, PipeId, PipeOpened, TargetHealth,
};

use crate::common::{wait_until, DEADLINE};

/// One hook call, owned.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Opened {
        id: PipeId,
        route: Option<String>,
        client: SocketAddr,
        target: Option<String>,
    },
    Connected {
        id: PipeId,
        target: String,
        connect_time: Duration,
    },
    Forwarded {
        id: PipeId,
        direction: Direction,
        bytes: u64,
    },
    Full {
        id: PipeId,
        direction: Direction,
    },
    Drained {
        id: PipeId,
        direction: Direction,
    },
    TargetDown {
        route: String,
        target: String,
    },
    TargetUp {
        route: String,
        target: String,
    },
    Closed {
        id: PipeId,
        route: Option<String>,
        reason: CloseReason,
        bytes_toward_target: u64,
        bytes_toward_client: u64,
        duration: Duration,
    },
}

impl Event {
    /// The pipe it is about, if any.
    pub fn pipe(&self) -> Option<PipeId> {
        match self {
            Event::Opened { id, .. }
            | Event::Connected { id, .. }
            | Event::Forwarded { id, .. }
            | Event::Full { id, .. }
            | Event::Drained { id, .. }
            | Event::Closed { id, .. } => Some(*id),
            Event::TargetDown { .. } | Event::TargetUp { .. } => None,
        }
    }
}

/// What the recording hooks have heard, shared with the test.
#[derive(Clone, Default)]
pub struct Events(Arc<Mutex<Vec<Event>>>);

impl Events {
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }

    /// Every event about pipe `id`, in order.
    pub fn of(&self, id: PipeId) -> Vec<Event> {
        self.all()
            .into_iter()
            .filter(|e| e.pipe() == Some(id))
            .collect()
    }

    /// Waits until an event matches `wanted`, and returns it.
    pub fn wait_for(&self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        let mut found = None;
        let seen = wait_until(DEADLINE, || {
            found = self.all().into_iter().find(|e| wanted(e));
            found.is_some()
        });
        assert!(seen, "never heard {what}; events: {:#?}", self.all());
        found.unwrap()
    }

    /// The id of the pipe opened for the client at `client`.
    pub fn pipe_of(&self, client: SocketAddr) -> PipeId {
        let opened = self.wait_for(
            "the pipe opened",
            |e| matches!(e, Event::Opened { client: c, .. } if *c == client),
        );
        opened.pipe().unwrap()
    }

    /// Waits for pipe `id` to close, and returns how.
    pub fn closed(&self, id: PipeId) -> Event {
        self.wait_for(
            "the pipe closed",
            |e| matches!(e, Event::Closed { id: i, .. } if *i == id),
        )
    }

    /// The reason pipe `id` closed with, once it has.
    pub fn close_reason(&self, id: PipeId) -> CloseReason {
        match self.closed(id) {
            Event::Closed { reason, .. } => reason,
            _ => unreachable!(),
        }
    }

    fn push(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

/// What a test's hooks do on an event of a live pipe, besides recording it.
pub type Reaction = Box<dyn FnMut(&Event, &mut PipeControl) + Send>;

/// Hooks that record every call into `Events`, and react to pipe events
/// as the test says.
pub struct Recorder(pub Events, pub Option<Reaction>);

impl Recorder {
    fn heard(&mut self, event: Event, control: &mut PipeControl) {
        if let Some(react) = self.1.as_mut() {
            react(&event, control);
        }
        self.0.push(event);
    }
}

impl Hooks for Recorder {
    fn pipe_opened(&mut self, pipe: &PipeOpened<'_>, control: &mut PipeControl) {
        let event = Event::Opened {
            id: pipe.id,
            route: pipe.route.map(str::to_string),
            client: pipe.client,
            target: pipe.target.map(str::to_string),
        };
        self.heard(event, control);
    }

    fn connected(&mut self, pipe: &Connected<'_>, control: &mut PipeControl) {
        let event = Event::Connected {
            id: pipe.id,
            target: pipe.target.to_string(),
            connect_time: pipe.connect_time,
        };
        self.heard(event, control);
    }

    fn forwarded(
        &mut self,
        id: PipeId,
        direction: Direction,
        bytes: u64,
        control: &mut PipeControl,
    ) {
        let event = Event::Forwarded {
            id,
            direction,
            bytes,
        };
        self.heard(event, control);
    }

    fn buffer_full(&mut self, id: PipeId, direction: Direction, control: &mut PipeControl) {
        self.heard(Event::Full { id, direction }, control);
    }

    fn buffer_drained(&mut self, id: PipeId, direction: Direction, control: &mut PipeControl) {
        self.heard(Event::Drained { id, direction }, control);
    }

    fn target_down(&mut self, target: &TargetHealth<'_>) {
        self.0.push(Event::TargetDown {
            route: target.route.to_string(),
            target: target.target.to_string(),
        });
    }

    fn target_up(&mut self, target: &TargetHealth<'_>) {
        self.0.push(Event::TargetUp {
            route: target.route.to_string(),
            target: target.target.to_string(),
        });
    }

    fn pipe_closed(&mut self, pipe: &PipeClosed<'_>) {
        self.0.push(Event::Closed {
            id: pipe.id,
            route: pipe.route.map(str::to_string),
            reason: pipe.reason,
            bytes_toward_target: pipe.bytes_toward_target,
            bytes_toward_client: pipe.bytes_toward_client,
            duration: pipe.duration,
        });
    }
}

/// A library forwarder with recording hooks, running on its own thread.
pub struct Running {
    /// The first route's first address, if it has routes.
    pub addr: Option<SocketAddr>,
    /// Every route's addresses.
    pub listening: Vec<(String, SocketAddr)>,
    pub handle: Handle,
    pub events: Events,
    thread: Option<JoinHandle<std::io::Result<()>>>,
}

impl Running {
    pub fn start(config: Config) -> Running {
        Running::start_with(config, None)
    }

    /// With hooks that also `react` to each event of a live pipe.
    pub fn start_reacting(
        config: Config,
        react: impl FnMut(&Event, &mut PipeControl) + Send + 'static,
    ) -> Running {
        Running::start_with(config, Some(Box::new(react)))
    }

    fn start_with(config: Config, react: Option<Reaction>) -> Running {
        let events = Events::default();
        let recorder = Recorder(events.clone(), react);
        Running::start_built(Forwarder::builder(config).hooks(recorder), events)
    }

    /// Of a builder whose hooks record into `events`.
    pub fn start_built(builder: Builder, events: Events) -> Running {
        Running::start_forwarder(builder.bind().expect("bind the forwarder"), events)
    }

    /// Of a bound forwarder (its hooks, if any, record into `events`).
    pub fn start_forwarder(forwarder: Forwarder, events: Events) -> Running {
        let addr = forwarder.local_addr();
        let listening = forwarder.listening();
        let handle = forwarder.handle();
        let thread = Some(thread::spawn(move || forwarder.run()));
        Running {
            addr,
            listening,
            handle,
            events,
            thread,
        }
    }

    /// The first route's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("the forwarder has a route")
    }

    /// Where route `name` listens.
    pub fn route_addr(&self, name: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|(route, _)| route == name)
            .map(|(_, addr)| *addr)
            .unwrap_or_else(|| panic!("no route {name}: {:?}", self.listening))
    }

    /// Shuts down twice (the second aborts what is left) and waits for the
    /// loop to end.
    pub fn stop(mut self) {
        self.handle.shutdown();
        self.handle.shutdown();
        if let Some(thread) = self.thread.take() {
            thread.join().expect("loop thread").expect("run");
        }
    }
}
