//! The GSSAPI mechanism from MIT Kerberos (through `libgssapi`): a [`GssapiContext`] for the
//! core's bind steps, with credentials from the ccache (`KRB5CCNAME`, after `kinit`) or a client
//! keytab (`KRB5_CLIENT_KTNAME`), and realm and KDC from `KRB5_CONFIG`, as Kerberos users expect.

use libgssapi::context::{ClientCtx, CtxFlags, SecurityContext};
use libgssapi::error::Error as GssError;
use libgssapi::name::Name;
use libgssapi::oid::{GSS_MECH_KRB5, GSS_NT_HOSTBASED_SERVICE, GSS_NT_KRB5_PRINCIPAL};
use syncrepl_proto::sasl::{GssapiContext, GssapiStep, MechanismError};

/// The routine error codes of RFC 2744 §3.9.1 that deserve a hint (the field at bits 16–23).
const NO_CRED: u32 = 7 << 16;
const CREDENTIALS_EXPIRED: u32 = 11 << 16;
const ROUTINE_ERROR: u32 = 0xff << 16;
/// MIT's `KRB5KRB_AP_ERR_TKT_EXPIRED` ("Ticket expired"), which comes with `GSS_S_FAILURE`.
const TICKET_EXPIRED: u32 = (-1_765_328_352_i32) as u32;
/// MIT's `KRB5_KDC_UNREACH` ("Cannot contact any KDC for realm"), as the minor status carries it.
const KDC_UNREACHABLE: u32 = (-1_765_328_228_i32) as u32;

/// A Kerberos security context toward one LDAP server.
#[derive(Debug)]
pub(crate) struct Kerberos {
    context: ClientCtx,
}

impl Kerberos {
    /// A context for `principal`: a host-based service name (`ldap@host`, as Cyrus SASL passes
    /// it with `SASL_NOCANON`) or, when it contains `/`, a Kerberos principal
    /// (`ldap/host@REALM`).
    pub(crate) fn new(principal: &str) -> Result<Kerberos, MechanismError> {
        let kind = if principal.contains('/') {
            GSS_NT_KRB5_PRINCIPAL
        } else {
            GSS_NT_HOSTBASED_SERVICE
        };
        let name = Name::new(principal.as_bytes(), Some(kind))
            .map_err(|e| MechanismError::new(format!("service principal {principal:?}: {e}")))?;
        let flags = CtxFlags::GSS_C_MUTUAL_FLAG
            | CtxFlags::GSS_C_SEQUENCE_FLAG
            | CtxFlags::GSS_C_REPLAY_FLAG
            | CtxFlags::GSS_C_INTEG_FLAG
            | CtxFlags::GSS_C_CONF_FLAG;
        Ok(Kerberos {
            context: ClientCtx::new(None, name, flags, Some(GSS_MECH_KRB5)),
        })
    }
}

impl GssapiContext for Kerberos {
    fn step(&mut self, token: Option<&[u8]>) -> Result<GssapiStep, MechanismError> {
        let out = self.context.step(token, None).map_err(explain)?;
        Ok(GssapiStep {
            token: out.map(|b| b.to_vec()).unwrap_or_default(),
            complete: self.context.is_complete(),
        })
    }

    fn wrap(&mut self, message: &[u8], confidential: bool) -> Result<Vec<u8>, MechanismError> {
        self.context
            .wrap(confidential, message)
            .map(|b| b.to_vec())
            .map_err(explain)
    }

    fn unwrap(&mut self, token: &[u8]) -> Result<Vec<u8>, MechanismError> {
        self.context
            .unwrap(token)
            .map(|b| b.to_vec())
            .map_err(explain)
    }
}

const EXPIRED_HINT: &str = "; the Kerberos ticket has expired: run kinit again, or set \
     KRB5_CLIENT_KTNAME to a client keytab so that tickets are renewed";

/// The library's own words (its `Display`; its `Debug` misnames routine errors as flags), with
/// what to do when the cause is a missing or expired ticket.
fn explain(e: GssError) -> MechanismError {
    let hint = match e.major.bits() & ROUTINE_ERROR {
        _ if e.minor == TICKET_EXPIRED => EXPIRED_HINT,
        NO_CRED => "; no Kerberos ticket: run kinit, or set KRB5_CLIENT_KTNAME to a client keytab",
        CREDENTIALS_EXPIRED => EXPIRED_HINT,
        _ => "",
    };
    MechanismError {
        message: format!("{}{hint}", e.to_string().trim_end()),
        transient: e.minor == KDC_UNREACHABLE,
    }
}
