//! Where the registry is and how to log in: `--registry-url` and `--registry-basic-auth`,
//! validated, with the credentials taken out of the URL so it can be shown.

use percent_encoding::percent_decode_str;
use reqwest::Url;

use super::RegistryError;
use crate::secret::Secret;

/// HTTP basic credentials for the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// User name (an API key on Confluent Cloud).
    pub user: String,
    /// Password (an API secret on Confluent Cloud).
    pub password: Secret,
}

impl BasicAuth {
    /// Parses `user:password` (the password may contain `:`, the user may not).
    pub fn parse(text: &Secret) -> Result<Self, RegistryError> {
        match text.expose().split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Self {
                user: user.to_owned(),
                password: Secret::new(password),
            }),
            _ => Err(RegistryError::InvalidBasicAuth),
        }
    }
}

/// Where the registry is and how to log in; validated, credentials kept apart from the URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrySettings {
    pub(super) url: Url,
    pub(super) auth: Option<BasicAuth>,
}

impl RegistrySettings {
    /// Validates `--registry-url` and `--registry-basic-auth`. Errors never repeat the URL, which
    /// may hold a password.
    pub fn new(url: &str, basic_auth: Option<&Secret>) -> Result<Self, RegistryError> {
        let mut url = Url::parse(url).map_err(|error| RegistryError::InvalidUrl {
            reason: error.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(RegistryError::InvalidUrl {
                reason: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        let from_url = take_user_info(&mut url)?;
        let from_flag = basic_auth.map(BasicAuth::parse).transpose()?;
        let auth = match (from_url, from_flag) {
            (Some(_), Some(_)) => return Err(RegistryError::ConflictingCredentials),
            (from_url, from_flag) => from_url.or(from_flag),
        };
        // The query and fragment have no place in an API base URL; dropping them keeps paths
        // appended below well-formed.
        url.set_query(None);
        url.set_fragment(None);
        Ok(Self { url, auth })
    }

    /// The registry's base URL, without credentials: safe to print.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// Whether requests carry basic credentials.
    pub fn has_credentials(&self) -> bool {
        self.auth.is_some()
    }

    /// The base URL with `segments` appended, keeping any path prefix (a registry behind a
    /// proxy at `https://host/registry/`).
    pub(super) fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.url.clone();
        // `new` admits only http(s) URLs, which always have a path to extend.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

/// Moves `user:password@` out of the URL into credentials.
fn take_user_info(url: &mut Url) -> Result<Option<BasicAuth>, RegistryError> {
    if url.username().is_empty() && url.password().is_none() {
        return Ok(None);
    }
    let decode = |text: &str| {
        percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| RegistryError::InvalidUrl {
                reason: "its user info is not valid UTF-8 once percent-decoded".into(),
            })
    };
    let user = decode(url.username())?;
    let password = decode(url.password().unwrap_or_default())?;
    let stripped = url.set_username("").is_ok() && url.set_password(None).is_ok();
    if user.is_empty() || !stripped {
        return Err(RegistryError::InvalidUrl {
            reason: "its user info must be user:password".into(),
        });
    }
    Ok(Some(BasicAuth {
        user,
        password: Secret::new(password),
    }))
}
