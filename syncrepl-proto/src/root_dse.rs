//! The root DSE (RFC 4512 §5.1): which controls a server offers, RFC 4533's or Active Directory's
//! DirSync, and its naming contexts, from which a DirSync search must run.

use rasn_ldap::SearchRequestScope;

use crate::dirsync::DIRSYNC_OID;
use crate::entry::AttributeList;
use crate::error::{Error, Violation};
use crate::message::{ServerMessage, ServerOp};
use crate::request::search;
use crate::sync;
use crate::types::MessageId;

/// The root DSE's facts a consumer chooses its dialect and naming context from (RFC 4512 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RootDse {
    /// namingContexts.
    pub naming_contexts: Vec<String>,
    /// defaultNamingContext (Active Directory).
    pub default_naming_context: Option<String>,
    /// supportedControl OIDs.
    pub supported_controls: Vec<String>,
    /// vendorName, when the server says.
    pub vendor_name: Option<String>,
}

impl RootDse {
    /// Whether the server offers RFC 4533's Sync Request Control.
    pub fn supports_rfc4533(&self) -> bool {
        self.supported_controls
            .iter()
            .any(|c| c == sync::SYNC_REQUEST_OID)
    }

    /// Whether the server offers DirSync, i.e. is Active Directory or Samba.
    pub fn supports_dirsync(&self) -> bool {
        self.supported_controls.iter().any(|c| c == DIRSYNC_OID)
    }

    /// The naming context that holds `base`: the longest of [`RootDse::naming_contexts`] that `base`
    /// ends with, compared without case and spaces after commas.
    pub fn naming_context_of(&self, base: &str) -> Option<&str> {
        let squash = |s: &str| {
            s.split(',')
                .map(|p| p.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        };
        let base = squash(base);
        self.naming_contexts
            .iter()
            .filter(|nc| {
                let nc = squash(nc);
                !nc.is_empty() && base.len() >= nc.len() && base[base.len() - nc.len()..] == nc[..]
            })
            .max_by_key(|nc| nc.len())
            .map(String::as_str)
    }

    fn from_entry(attributes: &AttributeList) -> RootDse {
        let texts = |name: &str| -> Vec<String> {
            attributes
                .get(name)
                .into_iter()
                .flatten()
                .filter_map(|v| std::str::from_utf8(v).ok().map(str::to_owned))
                .collect()
        };
        RootDse {
            naming_contexts: texts("namingContexts"),
            default_naming_context: texts("defaultNamingContext").into_iter().next(),
            supported_controls: texts("supportedControl"),
            vendor_name: texts("vendorName").into_iter().next(),
        }
    }
}

/// The attributes the root DSE read asks for.
const ROOT_DSE_ATTRIBUTES: [&str; 4] = [
    "namingContexts",
    "defaultNamingContext",
    "supportedControl",
    "vendorName",
];

/// One search of the root DSE (RFC 4512 §5.1).
pub(crate) fn root_dse_search(out: &mut Vec<u8>, id: MessageId) -> Result<(), Error> {
    search(
        out,
        id,
        "",
        SearchRequestScope::BaseObject,
        "(objectClass=*)",
        ROOT_DSE_ATTRIBUTES.iter().copied(),
        Vec::new(),
    )
}

/// The root DSE read in flight and what it returned so far.
#[derive(Debug, Clone)]
pub(crate) struct RootDseRead {
    pub(crate) id: MessageId,
    found: Option<RootDse>,
}

impl RootDseRead {
    pub(crate) fn new(id: MessageId) -> RootDseRead {
        RootDseRead { id, found: None }
    }

    /// Handles a message of the read; `Some` once it is done, with the event to report.
    pub(crate) fn message(
        &mut self,
        message: ServerMessage,
    ) -> Result<Option<crate::event::Event>, Error> {
        match message.op {
            ServerOp::SearchEntry { dn, attributes } if dn.is_empty() && self.found.is_none() => {
                self.found = Some(RootDse::from_entry(&attributes));
                Ok(None)
            }
            ServerOp::SearchReference(_) => Ok(None),
            ServerOp::SearchDone(result) => Ok(Some(crate::event::Event::RootDse {
                root_dse: Box::new(self.found.take().unwrap_or_default()),
                result,
            })),
            other => Err(Violation::UnexpectedResponse {
                id: message.id,
                request: "root DSE read",
                found: other.name(),
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naming_context_of_a_base() {
        let dse = RootDse {
            naming_contexts: vec![
                "DC=example,DC=test".into(),
                "CN=Configuration,DC=example,DC=test".into(),
                "DC=DomainDnsZones,DC=example,DC=test".into(),
            ],
            ..RootDse::default()
        };
        assert_eq!(
            dse.naming_context_of("OU=People, dc=Example,DC=test"),
            Some("DC=example,DC=test")
        );
        assert_eq!(
            dse.naming_context_of("CN=Schema,CN=Configuration,DC=example,DC=test"),
            Some("CN=Configuration,DC=example,DC=test")
        );
        assert_eq!(dse.naming_context_of("dc=other"), None);
    }
}
