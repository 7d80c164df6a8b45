//! Buildbot's `base` change hook dialect: a form POST with every change field and
//! `properties` as a JSON object string (a JSON body would be silently ignored).
//! What Buildbot reports back (`HttpStatusPush`) is read in [`reports`].

pub mod reports;

use std::time::Duration;

use serde_json::Value;

use super::{Accepted, BuildTrigger, CiTarget, DeliveryError, http_client, send};
use crate::{BoxFuture, Secret};

/// Buildbot's `base` change hook: a form POST, `properties` as a JSON object string.
pub struct Buildbot {
    url: String,
    basic_auth: Option<(String, Secret)>,
    http: reqwest::Client,
}

impl Buildbot {
    pub fn new(
        url: String,
        basic_auth: Option<(String, Secret)>,
        timeout: Duration,
    ) -> Result<Buildbot, DeliveryError> {
        Ok(Buildbot {
            url,
            basic_auth,
            http: http_client(timeout)?,
        })
    }

    /// The form fields, in a stable order.
    pub fn form(trigger: &BuildTrigger) -> Vec<(&'static str, String)> {
        let mut form = trigger.fields.pairs().to_vec();
        form.push((
            "properties",
            Value::Object(trigger.properties.clone()).to_string(),
        ));
        form
    }
}

impl CiTarget for Buildbot {
    fn deliver<'a>(
        &'a self,
        trigger: &'a BuildTrigger,
    ) -> BoxFuture<'a, Result<Accepted, DeliveryError>> {
        Box::pin(async move {
            let mut request = self.http.post(&self.url).form(&Self::form(trigger));
            if let Some((user, password)) = &self.basic_auth {
                request = request.basic_auth(user, Some(password.expose()));
            }
            send(request).await
        })
    }
}
