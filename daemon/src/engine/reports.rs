//! What has been logged already, so a state that repeats every slice (a busy forge,
//! a waiting build, a low budget) is logged when it starts or changes, not every
//! time it is seen.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

#[derive(Default)]
pub struct Reports {
    /// Messages already logged once (see `once`).
    once: Mutex<BTreeSet<String>>,
    /// The last state logged per topic (see `is_news`).
    last: Mutex<HashMap<String, String>>,
}

impl Reports {
    /// Whether `state` differs from the last one recorded for `topic` (recording it);
    /// `None` forgets the topic, so its next state is news again.
    pub fn is_news(&self, topic: String, state: Option<&str>) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match state {
            None => last.remove(&topic).is_some(),
            Some(state) if last.get(&topic).is_some_and(|s| s == state) => false,
            Some(state) => {
                last.insert(topic, state.to_owned());
                true
            }
        }
    }

    /// Logs `message` at info the first time it is seen in this process.
    pub fn once(&self, message: String) {
        let mut seen = self.once.lock().unwrap_or_else(|p| p.into_inner());
        if seen.insert(message.clone()) {
            tracing::info!("{message}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Reports;

    #[test]
    fn a_state_is_news_when_it_starts_or_changes_and_after_it_was_forgotten() {
        let reports = Reports::default();
        let news = |state| reports.is_news("budget github".to_owned(), state);
        assert!(news(Some("low")));
        assert!(!news(Some("low")));
        assert!(news(Some("ok")));
        assert!(news(None));
        assert!(!news(None));
        assert!(news(Some("ok")));
    }
}
