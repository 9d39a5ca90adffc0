//! The system's MIT GSSAPI (`libgssapi_krb5.so.2`), loaded when first used: the few calls a
//! Negotiate (SPNEGO over Kerberos) client needs, behind a safe API.
//!
//! Why loaded and not linked: a linked GSSAPI brings libkrb5, libk5crypto, libkrb5support,
//! libcom_err, libkeyutils and libresolv into every process at start — 0.6 MiB resident in an
//! idle sensor that never meets a Negotiate proxy (docs/benchmarks.md). Loaded here, they are
//! mapped only when a proxy first asks for Negotiate, and stay loaded after that (the library
//! keeps process-wide state: unloading it is not supported by MIT). It also means building
//! uplink needs neither libkrb5-dev nor libclang (no bindgen): the few declarations below are
//! GSSAPI's C bindings (RFC 2744), which are stable.
//!
//! Where things come from is MIT Kerberos' business, exactly as for `kinit` and `curl
//! --negotiate`: krb5.conf, keytabs, ticket caches (see `uplink_proxyauth::gssapi`).
//!
//! What it does not do: servers (accept_sec_context), wrap/unwrap, mutual authentication checks,
//! other mechanisms than Kerberos under SPNEGO.

use std::ffi::c_void;
use std::fmt;
use std::os::raw::c_int;
use std::ptr;
use std::sync::OnceLock;

/// The library loaded at first use: MIT Kerberos' GSSAPI (Debian: libgssapi-krb5-2).
pub const LIBRARY: &str = "libgssapi_krb5.so.2";

type OmUint32 = u32;
type RawName = *mut c_void;
type RawCred = *mut c_void;
type RawCtx = *mut c_void;

/// `gss_OID_desc`.
#[repr(C)]
struct OidDesc {
    length: OmUint32,
    elements: *mut c_void,
}

/// `gss_OID_set_desc`.
#[repr(C)]
struct OidSetDesc {
    count: usize,
    elements: *mut OidDesc,
}

/// `gss_buffer_desc`.
#[repr(C)]
struct BufferDesc {
    length: usize,
    value: *mut c_void,
}

impl BufferDesc {
    fn empty() -> BufferDesc {
        BufferDesc {
            length: 0,
            value: ptr::null_mut(),
        }
    }
    /// A buffer the library only reads (inputs are `const` in practice, not in the prototypes).
    fn input(bytes: &[u8]) -> BufferDesc {
        BufferDesc {
            length: bytes.len(),
            value: bytes.as_ptr() as *mut c_void,
        }
    }
}

// The OIDs, DER-encoded content octets.
/// 1.2.840.113554.1.2.2, Kerberos V5.
const MECH_KRB5: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";
/// 1.3.6.1.5.5.2, SPNEGO.
const MECH_SPNEGO: &[u8] = b"\x2b\x06\x01\x05\x05\x02";
/// 1.2.840.113554.1.2.1.4, GSS_C_NT_HOSTBASED_SERVICE (`service@host`).
const NT_HOSTBASED_SERVICE: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x01\x04";
/// 1.2.840.113554.1.2.2.1, GSS_KRB5_NT_PRINCIPAL_NAME (`user@REALM`).
const NT_KRB5_PRINCIPAL: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";

fn oid(bytes: &'static [u8]) -> OidDesc {
    OidDesc {
        length: bytes.len() as OmUint32,
        elements: bytes.as_ptr() as *mut c_void,
    }
}

const GSS_S_CONTINUE_NEEDED: OmUint32 = 1;
/// The calling-error and routine-error fields of a major status (RFC 2744 §3.9.1).
const GSS_ERROR_MASK: OmUint32 = 0xffff_0000;
const GSS_C_INDEFINITE: OmUint32 = 0xffff_ffff;
const GSS_C_INITIATE: c_int = 1;
const GSS_C_MUTUAL_FLAG: OmUint32 = 2;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;

type ImportName =
    unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc, *mut OidDesc, *mut RawName) -> OmUint32;
type ReleaseName = unsafe extern "C" fn(*mut OmUint32, *mut RawName) -> OmUint32;
type AcquireCred = unsafe extern "C" fn(
    *mut OmUint32,
    RawName,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *mut RawCred,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
type AcquireCredWithPassword = unsafe extern "C" fn(
    *mut OmUint32,
    RawName,
    *mut BufferDesc,
    OmUint32,
    *mut OidSetDesc,
    c_int,
    *mut RawCred,
    *mut *mut OidSetDesc,
    *mut OmUint32,
) -> OmUint32;
type ReleaseCred = unsafe extern "C" fn(*mut OmUint32, *mut RawCred) -> OmUint32;
type InitSecContext = unsafe extern "C" fn(
    *mut OmUint32,
    RawCred,
    *mut RawCtx,
    RawName,
    *mut OidDesc,
    OmUint32,
    OmUint32,
    *mut c_void,
    *mut BufferDesc,
    *mut *mut OidDesc,
    *mut BufferDesc,
    *mut OmUint32,
    *mut OmUint32,
) -> OmUint32;
type DeleteSecContext =
    unsafe extern "C" fn(*mut OmUint32, *mut RawCtx, *mut BufferDesc) -> OmUint32;
type ReleaseBuffer = unsafe extern "C" fn(*mut OmUint32, *mut BufferDesc) -> OmUint32;
type DisplayStatus = unsafe extern "C" fn(
    *mut OmUint32,
    OmUint32,
    c_int,
    *mut OidDesc,
    *mut OmUint32,
    *mut BufferDesc,
) -> OmUint32;

/// The library's entry points. Kept for the life of the process once loaded.
struct Api {
    import_name: ImportName,
    release_name: ReleaseName,
    acquire_cred: AcquireCred,
    acquire_cred_with_password: AcquireCredWithPassword,
    release_cred: ReleaseCred,
    init_sec_context: InitSecContext,
    delete_sec_context: DeleteSecContext,
    release_buffer: ReleaseBuffer,
    display_status: DisplayStatus,
    _library: libloading::Library,
}

impl Api {
    fn load(file: &str) -> Result<Api, String> {
        // SAFETY: loading MIT's GSSAPI runs its initialisers, which only set up its own state
        // (no constructors with preconditions on the caller).
        let library = unsafe { libloading::Library::new(file) }.map_err(|e| e.to_string())?;
        /// Looks up one entry point with the prototype `T`.
        fn get<T: Copy>(library: &libloading::Library, name: &str) -> Result<T, String> {
            // SAFETY: every `T` used below is the C prototype RFC 2744 (and MIT's gssapi.h, and
            // gssapi_ext.h for gss_acquire_cred_with_password) gives the symbol of that name.
            unsafe { library.get::<T>(name.as_bytes()) }
                .map(|s| *s)
                .map_err(|e| format!("{name}: {e}"))
        }
        Ok(Api {
            import_name: get(&library, "gss_import_name")?,
            release_name: get(&library, "gss_release_name")?,
            acquire_cred: get(&library, "gss_acquire_cred")?,
            acquire_cred_with_password: get(&library, "gss_acquire_cred_with_password")?,
            release_cred: get(&library, "gss_release_cred")?,
            init_sec_context: get(&library, "gss_init_sec_context")?,
            delete_sec_context: get(&library, "gss_delete_sec_context")?,
            release_buffer: get(&library, "gss_release_buffer")?,
            display_status: get(&library, "gss_display_status")?,
            _library: library,
        })
    }

    /// Copies a buffer the library allocated, and releases it.
    fn take(&self, buffer: &mut BufferDesc) -> Vec<u8> {
        let out = if buffer.value.is_null() || buffer.length == 0 {
            Vec::new()
        } else {
            // SAFETY: the library filled `buffer` with `length` bytes at `value`, which stay
            // valid until released below.
            unsafe { std::slice::from_raw_parts(buffer.value as *const u8, buffer.length) }.to_vec()
        };
        let mut minor = 0;
        // SAFETY: `buffer` was allocated by this library (or is empty, which it accepts).
        unsafe { (self.release_buffer)(&mut minor, buffer) };
        out
    }

    /// The library's text for a status code: each of its messages in turn.
    fn status_text(&self, code: OmUint32, kind: c_int) -> Vec<String> {
        let mut messages = Vec::new();
        let mut context: OmUint32 = 0;
        // Bounded: a library that never clears the context must not loop forever.
        for _ in 0..16 {
            let mut minor = 0;
            let mut buffer = BufferDesc::empty();
            // SAFETY: plain out-parameters; no mechanism OID (the mechglue knows the minor's).
            let major = unsafe {
                (self.display_status)(
                    &mut minor,
                    code,
                    kind,
                    ptr::null_mut(),
                    &mut context,
                    &mut buffer,
                )
            };
            if major & GSS_ERROR_MASK != 0 {
                messages.push(format!("unknown GSSAPI status {code}"));
                break;
            }
            messages.push(String::from_utf8_lossy(&self.take(&mut buffer)).into_owned());
            if context == 0 {
                break;
            }
        }
        messages
    }

    fn error(&self, major: OmUint32, minor: OmUint32) -> Error {
        let mut message = self.status_text(major, GSS_C_GSS_CODE).concat();
        for m in self.status_text(minor, GSS_C_MECH_CODE) {
            message.push_str(&format!(" ({m})"));
        }
        Error::Failed {
            major,
            minor,
            message,
        }
    }
}

static API: OnceLock<Result<Api, String>> = OnceLock::new();

/// The library, loaded on the first call (and the outcome of that first load kept).
fn api() -> Result<&'static Api, Error> {
    API.get_or_init(|| Api::load(LIBRARY))
        .as_ref()
        .map_err(|e| Error::NotLoaded(e.clone()))
}

/// Whether the library is loaded in this process (it is loaded only by the first call that needs
/// it).
pub fn is_loaded() -> bool {
    matches!(API.get(), Some(Ok(_)))
}

/// A failed GSSAPI call, or no GSSAPI library on this system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// [`LIBRARY`] could not be loaded (what the loader said).
    NotLoaded(String),
    /// A call failed: its status codes and the library's text for them, as
    /// `major message (minor message)`, e.g. `Unspecified GSS failure.  Minor code may provide
    /// more information (Preauthentication failed)`.
    Failed {
        major: u32,
        minor: u32,
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotLoaded(why) => write!(
                f,
                "the GSSAPI library {LIBRARY} could not be loaded ({why}): install MIT Kerberos' \
                 GSSAPI library (Debian and Ubuntu: libgssapi-krb5-2; RHEL: krb5-libs)"
            ),
            Error::Failed { message, .. } => f.write_str(message),
        }
    }
}

impl std::error::Error for Error {}

/// A GSSAPI name (`gss_name_t`).
pub struct Name {
    raw: RawName,
}

// SAFETY: a GSSAPI name is a heap object of the library with no thread affinity; it is only
// used through `&self`/`&mut self`, i.e. by one thread at a time (MIT's GSSAPI is thread-safe
// for distinct objects).
unsafe impl Send for Name {}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Name")
    }
}

impl Name {
    fn import(text: &str, kind: &'static [u8]) -> Result<Name, Error> {
        let api = api()?;
        let mut minor = 0;
        let mut raw: RawName = ptr::null_mut();
        let mut buffer = BufferDesc::input(text.as_bytes());
        let mut kind = oid(kind);
        // SAFETY: the buffer and OID point to live memory for the call, which copies both.
        let major = unsafe { (api.import_name)(&mut minor, &mut buffer, &mut kind, &mut raw) };
        if major & GSS_ERROR_MASK != 0 {
            return Err(api.error(major, minor));
        }
        Ok(Name { raw })
    }

    /// A Kerberos principal, `user@REALM` (or `user`, for krb5.conf's default realm).
    pub fn principal(principal: &str) -> Result<Name, Error> {
        Name::import(principal, NT_KRB5_PRINCIPAL)
    }

    /// A host-based service, `service@host` (e.g. `HTTP@proxy.example.com`).
    pub fn host_service(service: &str) -> Result<Name, Error> {
        Name::import(service, NT_HOSTBASED_SERVICE)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        if let Ok(api) = api() {
            let mut minor = 0;
            // SAFETY: `raw` came from gss_import_name and is released once.
            unsafe { (api.release_name)(&mut minor, &mut self.raw) };
        }
    }
}

/// Initiator credentials for Kerberos, usable by SPNEGO (`gss_cred_id_t`).
pub struct Cred {
    raw: RawCred,
}

// SAFETY: as for `Name`: a library object without thread affinity, used by one thread at a time.
unsafe impl Send for Cred {}

impl fmt::Debug for Cred {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cred")
    }
}

impl Cred {
    /// Credentials the system already has for `name` (or the default principal): the client
    /// keytab or a ticket cache.
    pub fn acquire(name: Option<&Name>) -> Result<Cred, Error> {
        Cred::get(name, None)
    }

    /// A fresh ticket from the KDC for `name` with `password` (kept in memory, never in a
    /// ticket cache on disk).
    pub fn with_password(name: Option<&Name>, password: &[u8]) -> Result<Cred, Error> {
        Cred::get(name, Some(password))
    }

    fn get(name: Option<&Name>, password: Option<&[u8]>) -> Result<Cred, Error> {
        let api = api()?;
        // Kerberos, and SPNEGO, which needs the credentials listed for itself too.
        let mut mechs = [oid(MECH_KRB5), oid(MECH_SPNEGO)];
        let mut set = OidSetDesc {
            count: mechs.len(),
            elements: mechs.as_mut_ptr(),
        };
        let name = name.map_or(ptr::null_mut(), |n| n.raw);
        let mut minor = 0;
        let mut raw: RawCred = ptr::null_mut();
        let major = match password {
            // SAFETY: the name is live (borrowed), the OID set and its OIDs live on this stack
            // for the call, which only reads them; the other pointers are out-parameters or null.
            None => unsafe {
                (api.acquire_cred)(
                    &mut minor,
                    name,
                    GSS_C_INDEFINITE,
                    &mut set,
                    GSS_C_INITIATE,
                    &mut raw,
                    ptr::null_mut(),
                    ptr::null_mut(),
                )
            },
            Some(password) => {
                let mut password = BufferDesc::input(password);
                // SAFETY: as above; the password buffer is read during the call only.
                unsafe {
                    (api.acquire_cred_with_password)(
                        &mut minor,
                        name,
                        &mut password,
                        GSS_C_INDEFINITE,
                        &mut set,
                        GSS_C_INITIATE,
                        &mut raw,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                }
            }
        };
        if major & GSS_ERROR_MASK != 0 {
            return Err(api.error(major, minor));
        }
        Ok(Cred { raw })
    }
}

impl Drop for Cred {
    fn drop(&mut self) {
        if let Ok(api) = api() {
            let mut minor = 0;
            // SAFETY: `raw` came from gss_acquire_cred* and is released once.
            unsafe { (api.release_cred)(&mut minor, &mut self.raw) };
        }
    }
}

/// A SPNEGO client context with mutual authentication requested (`gss_ctx_id_t`), holding the
/// credentials and the target it was made for.
pub struct ClientCtx {
    raw: RawCtx,
    cred: Cred,
    target: Name,
    /// The mechanism OID, at an address that stays put while the context lives.
    mech: Box<OidDesc>,
    complete: bool,
    failed: Option<Error>,
}

// SAFETY: as for `Name`; the boxed OID points to static bytes.
unsafe impl Send for ClientCtx {}

impl fmt::Debug for ClientCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCtx")
            .field("complete", &self.complete)
            .finish_non_exhaustive()
    }
}

impl ClientCtx {
    /// A context for `target` (see [`Name::host_service`]) with `cred`; nothing is sent until
    /// [`ClientCtx::step`].
    pub fn new(cred: Cred, target: Name) -> ClientCtx {
        ClientCtx {
            raw: ptr::null_mut(),
            cred,
            target,
            mech: Box::new(oid(MECH_SPNEGO)),
            complete: false,
            failed: None,
        }
    }

    /// Whether the library said the context is established.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// One round: the peer's token (None for the first), the token to send back (None when
    /// complete with nothing to send). A failure is final for this context.
    pub fn step(&mut self, token: Option<&[u8]>) -> Result<Option<Vec<u8>>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.complete {
            return Ok(None);
        }
        let api = api()?;
        let mut minor = 0;
        let mut input = token.map(BufferDesc::input);
        let mut output = BufferDesc::empty();
        // SAFETY: the credentials, target and context are this struct's live handles; the
        // mechanism OID is boxed for the context's life; the input token is read during the call;
        // no channel bindings; the output buffer is released by `take`.
        let major = unsafe {
            (api.init_sec_context)(
                &mut minor,
                self.cred.raw,
                &mut self.raw,
                self.target.raw,
                &mut *self.mech,
                GSS_C_MUTUAL_FLAG,
                GSS_C_INDEFINITE,
                ptr::null_mut(),
                input
                    .as_mut()
                    .map_or(ptr::null_mut(), |b| b as *mut BufferDesc),
                ptr::null_mut(),
                &mut output,
                ptr::null_mut(),
                ptr::null_mut(),
            )
        };
        let out = api.take(&mut output);
        if major & GSS_ERROR_MASK != 0 {
            let e = api.error(major, minor);
            self.failed = Some(e.clone());
            return Err(e);
        }
        if major & GSS_S_CONTINUE_NEEDED == 0 {
            self.complete = true;
            if out.is_empty() {
                return Ok(None);
            }
        }
        Ok(Some(out))
    }
}

impl Drop for ClientCtx {
    fn drop(&mut self) {
        if self.raw.is_null() {
            return;
        }
        if let Ok(api) = api() {
            let mut minor = 0;
            // SAFETY: `raw` came from gss_init_sec_context and is deleted once; no output token.
            unsafe { (api.delete_sec_context)(&mut minor, &mut self.raw, ptr::null_mut()) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_is_not_loaded_naming_it_and_the_package() {
        let err = Api::load("libuplink-no-such-gssapi.so.9")
            .err()
            .expect("no such library");
        assert!(err.contains("libuplink-no-such-gssapi.so.9"), "{err}");
        let shown = Error::NotLoaded(err).to_string();
        assert!(
            shown.contains(LIBRARY) && shown.contains("libgssapi-krb5-2"),
            "{shown}"
        );
    }

    #[test]
    fn error_bits_follow_rfc_2744() {
        // GSS_S_FAILURE is routine error 13; GSS_S_NO_CRED 7; CONTINUE_NEEDED is supplementary.
        for (major, error) in [(13 << 16, true), (7 << 16, true), (1, false), (0, false)] {
            assert_eq!(major & GSS_ERROR_MASK != 0, error, "{major:#x}");
        }
    }

    /// Needs the library (test.sh installs krb5-user, which brings it). Under CI it must be there.
    fn loaded() -> bool {
        match api() {
            Ok(_) => true,
            Err(e) if std::env::var_os("CI").is_some() => panic!("{e}"),
            Err(e) => {
                eprintln!("note: {e}; not run");
                false
            }
        }
    }

    #[test]
    fn names_import_and_the_library_words_its_failures() {
        if !loaded() {
            return;
        }
        assert!(is_loaded());
        Name::principal("alice@EXAMPLE.TEST").expect("a principal");
        let target = Name::host_service("HTTP@proxy.example.test").expect("a service name");
        // No such realm's KDC: a failure with the library's words, never a panic.
        std::env::set_var("KRB5_CONFIG", "/nonexistent/uplink-krb5.conf");
        std::env::set_var("KRB5CCNAME", "FILE:/nonexistent/uplink-ccache");
        std::env::set_var("KRB5_CLIENT_KTNAME", "FILE:/nonexistent/uplink-keytab");
        let err = Cred::acquire(None)
            .map(|_| ())
            .expect_err("no credentials here");
        match &err {
            Error::Failed { major, message, .. } => {
                assert!(major & GSS_ERROR_MASK != 0, "{err:?}");
                assert!(
                    !message.is_empty() && !message.contains("unknown GSSAPI"),
                    "{err:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        drop(target);
    }
}
