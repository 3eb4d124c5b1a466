//! The crate's only unsafe code: the few OpenSSL CMS calls the `openssl` crate does not wrap.
//!
//! The `openssl` crate wraps `CMS_sign`, `CMS_encrypt`, `CMS_decrypt` and `CMS_verify`, but not
//! what Direct needs beyond them:
//!
//! - recipients with RSAES-OAEP key transport (`CMS_add1_recipient_cert` with `CMS_KEY_PARAM`,
//!   then the recipient's `EVP_PKEY_CTX` set to OAEP padding, then `CMS_final`), exactly as
//!   `openssl cms -encrypt -keyopt rsa_padding_mode:oaep` does;
//! - the certificates a `SignedData` carries (`CMS_get1_certs`) and the ones that signed a verified `SignedData` (`CMS_get0_signers`), so the caller can
//!   validate their paths with its own policy;
//! - the digest algorithm of each signer (`CMS_SignerInfo_get0_algs`), so a SHA-1 or MD5
//!   signature is refused;
//! - `CMS_decrypt` into a memory buffer sized up front, and `CMS_verify` of a detached
//!   signature with no output: the crate's wrappers copy every byte through a memory BIO
//!   that grows (allocate, copy, wipe) a third at a time.
//!
//! Every function here is safe to call: pointers come from live `openssl` objects, every
//! returned pointer is checked for NULL, and ownership follows the OpenSSL manual pages
//! (`get0` results are borrowed; the stacks `CMS_get0_signers` returns are freed, not their
//! certificates, which are up-referenced before they are wrapped).
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_long, c_uint, c_ulong, c_void};
use std::ptr;

use foreign_types::{ForeignType, ForeignTypeRef};
use openssl::cms::{CMSOptions, CmsContentInfo, CmsContentInfoRef};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::{Stack, StackRef};
use openssl::symm::Cipher;
use openssl::x509::{X509Ref, X509};
use openssl_sys as sys;

#[allow(non_camel_case_types)]
enum CMS_RecipientInfo {}
/// `BUF_MEM` (openssl/buffer.h), whose fields are public.
#[repr(C)]
struct BufMem {
    length: usize,
    data: *mut c_char,
    max: usize,
    flags: c_ulong,
}
const BIO_C_SET_BUF_MEM: c_int = 114;
const BIO_CLOSE: c_long = 1;
#[allow(non_camel_case_types)]
enum CMS_SignerInfo {}

extern "C" {
    fn CMS_add1_recipient_cert(
        cms: *mut sys::CMS_ContentInfo,
        recip: *mut sys::X509,
        flags: c_uint,
    ) -> *mut CMS_RecipientInfo;
    fn CMS_RecipientInfo_get0_pkey_ctx(ri: *mut CMS_RecipientInfo) -> *mut sys::EVP_PKEY_CTX;
    fn CMS_final(
        cms: *mut sys::CMS_ContentInfo,
        data: *mut sys::BIO,
        dcont: *mut sys::BIO,
        flags: c_uint,
    ) -> c_int;
    fn CMS_get0_signers(cms: *mut sys::CMS_ContentInfo) -> *mut sys::OPENSSL_STACK;
    fn CMS_get1_certs(cms: *mut sys::CMS_ContentInfo) -> *mut sys::stack_st_X509;
    fn CMS_get0_SignerInfos(cms: *mut sys::CMS_ContentInfo) -> *mut sys::OPENSSL_STACK;
    fn BUF_MEM_new() -> *mut BufMem;
    fn BUF_MEM_grow(str: *mut BufMem, len: usize) -> usize;
    fn BUF_MEM_free(a: *mut BufMem);
    fn CMS_SignerInfo_get0_algs(
        si: *mut CMS_SignerInfo,
        pk: *mut *mut sys::EVP_PKEY,
        signer: *mut *mut sys::X509,
        pdig: *mut *mut sys::X509_ALGOR,
        psig: *mut *mut sys::X509_ALGOR,
    );
}

/// Frees a memory BIO (and the buffer it owns) when dropped.
struct Bio(*mut sys::BIO);

impl Bio {
    fn from_slice(data: &[u8]) -> Result<Bio, ErrorStack> {
        let len = c_int::try_from(data.len()).map_err(|_| ErrorStack::get())?;
        // SAFETY: the BIO borrows `data` read-only, and is freed (Drop) before `data` can go.
        let bio = unsafe { sys::BIO_new_mem_buf(data.as_ptr() as *const c_void, len) };
        if bio.is_null() {
            return Err(ErrorStack::get());
        }
        Ok(Bio(bio))
    }
}

impl Drop for Bio {
    fn drop(&mut self) {
        // SAFETY: `self.0` came from BIO_new_mem_buf or BIO_new and is freed once.
        unsafe { sys::BIO_free_all(self.0) };
    }
}

/// A memory BIO to write into whose buffer already holds `capacity` bytes: OpenSSL's own
/// memory BIO grows its buffer a third at a time, each time allocating, copying, and wiping the
/// old one, which for a 100 KB message cost more than the AES that filled it.
fn output_bio(capacity: usize) -> Result<Bio, ErrorStack> {
    // SAFETY: the BUF_MEM is checked, grown, and emptied (length 0; `max` stays `capacity`) before
    // the BIO takes ownership of it (BIO_CLOSE frees it with the BIO); on a failure before the
    // hand-over it is freed here. The BIO is checked for NULL and owned by `Bio` from then on.
    unsafe {
        let buf = BUF_MEM_new();
        if buf.is_null() {
            return Err(ErrorStack::get());
        }
        // Past 64 MiB the buffer grows as it would have (far beyond any message size limit).
        let capacity = capacity.min(64 << 20);
        if capacity > 0 && BUF_MEM_grow(buf, capacity) == 0 {
            BUF_MEM_free(buf);
            return Err(ErrorStack::get());
        }
        (*buf).length = 0;
        let bio = sys::BIO_new(sys::BIO_s_mem());
        if bio.is_null() {
            BUF_MEM_free(buf);
            return Err(ErrorStack::get());
        }
        let bio = Bio(bio);
        // A memory BIO's ctrl always takes the buffer; were it ever to refuse, whether it kept
        // the buffer would be unknown, so it is leaked rather than risk freeing it twice.
        if sys::BIO_ctrl(bio.0, BIO_C_SET_BUF_MEM, BIO_CLOSE, buf as *mut c_void) <= 0 {
            return Err(ErrorStack::get());
        }
        Ok(bio)
    }
}

/// What a memory BIO holds, copied out.
fn bio_contents(bio: &Bio) -> Vec<u8> {
    let mut data: *mut c_char = ptr::null_mut();
    // SAFETY: `bio` is a live memory BIO; the pointer and length it reports stay valid until
    // the BIO is written to or freed, neither of which happens before the copy.
    unsafe {
        let len = sys::BIO_get_mem_data(bio.0, &mut data);
        if data.is_null() || len <= 0 {
            return Vec::new();
        }
        std::slice::from_raw_parts(data as *const u8, len as usize).to_vec()
    }
}

/// Decrypts `cms` with `key` for the recipient `cert` (`CMS_decrypt`, as the `openssl` crate's
/// `decrypt` does) into a buffer sized for `expected` bytes up front.
pub(crate) fn decrypt(
    cms: &CmsContentInfoRef,
    key: &PKeyRef<Private>,
    cert: &X509Ref,
    expected: usize,
) -> Result<Vec<u8>, ErrorStack> {
    let out = output_bio(expected)?;
    // SAFETY: every pointer is from a live object; a NULL detached-content BIO is allowed.
    let ok = unsafe {
        sys::CMS_decrypt(
            cms.as_ptr(),
            key.as_ptr(),
            cert.as_ptr(),
            ptr::null_mut(),
            out.0,
            0,
        )
    };
    if ok <= 0 {
        return Err(ErrorStack::get());
    }
    Ok(bio_contents(&out))
}

/// Verifies `cms`, a detached signature, over `content` (`CMS_verify` with no output, so
/// OpenSSL digests the content into a null sink rather than copying it out; the `openssl`
/// crate's `verify` always asks for the copy). `certs` are looked in for the signers.
pub(crate) fn verify_detached(
    cms: &CmsContentInfoRef,
    certs: &StackRef<X509>,
    content: &[u8],
    flags: CMSOptions,
) -> Result<(), ErrorStack> {
    let content = Bio::from_slice(content)?;
    // SAFETY: every pointer is from a live object; a NULL store (with NO_SIGNER_CERT_VERIFY)
    // and a NULL output BIO are allowed.
    let ok = unsafe {
        sys::CMS_verify(
            cms.as_ptr(),
            certs.as_ptr(),
            ptr::null_mut(),
            content.0,
            ptr::null_mut(),
            flags.bits(),
        )
    };
    if ok <= 0 {
        return Err(ErrorStack::get());
    }
    Ok(())
}

/// Encrypts `data` to `recipients` as CMS EnvelopedData (or AuthEnvelopedData for an AEAD
/// cipher) with RSAES-OAEP key transport, SHA-256 as the OAEP hash and MGF1 hash.
pub(crate) fn encrypt_oaep(
    recipients: &[X509],
    data: &[u8],
    cipher: Cipher,
) -> Result<CmsContentInfo, ErrorStack> {
    // BINARY: the content is canonical MIME already; PARTIAL and KEY_PARAM as `openssl cms -keyopt`.
    let flags = (CMSOptions::BINARY | CMSOptions::PARTIAL).bits();
    let key_param = CMSOptions::KEY_PARAM.bits();
    let input = Bio::from_slice(data)?;
    // SAFETY: a NULL certificate stack is allowed with CMS_PARTIAL (recipients are added below);
    // the returned pointer is owned by the CmsContentInfo at once so it is freed on every path.
    let cms = unsafe {
        let raw = sys::CMS_encrypt(ptr::null_mut(), input.0, cipher.as_ptr(), flags);
        if raw.is_null() {
            return Err(ErrorStack::get());
        }
        CmsContentInfo::from_ptr(raw)
    };
    for cert in recipients {
        // SAFETY: `cms` and `cert` are live; the RecipientInfo and its EVP_PKEY_CTX are owned by
        // `cms` (get0), and are only used before `cms` is dropped.
        unsafe {
            let ri = CMS_add1_recipient_cert(cms.as_ptr(), cert.as_ptr(), flags | key_param);
            if ri.is_null() {
                return Err(ErrorStack::get());
            }
            let pctx = CMS_RecipientInfo_get0_pkey_ctx(ri);
            if pctx.is_null()
                || sys::EVP_PKEY_CTX_set_rsa_padding(pctx, sys::RSA_PKCS1_OAEP_PADDING) <= 0
                || sys::EVP_PKEY_CTX_set_rsa_oaep_md(pctx, MessageDigest::sha256().as_ptr() as _)
                    <= 0
                || sys::EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, MessageDigest::sha256().as_ptr() as _)
                    <= 0
            {
                return Err(ErrorStack::get());
            }
        }
    }
    let input = Bio::from_slice(data)?;
    // SAFETY: `cms` and the BIO are live; a NULL detached-content BIO is allowed.
    let ok = unsafe { CMS_final(cms.as_ptr(), input.0, ptr::null_mut(), flags) };
    if ok <= 0 {
        return Err(ErrorStack::get());
    }
    Ok(cms)
}

/// The certificates that signed `cms`, as `CMS_verify` found them: call only after a
/// successful `CmsContentInfo::verify`.
pub(crate) fn signers(cms: &CmsContentInfoRef) -> Result<Vec<X509>, ErrorStack> {
    // SAFETY: `cms` is live; the stack is freed here, its certificates are borrowed (get0) and
    // up-referenced before being wrapped as owned `X509`s.
    unsafe {
        let stack = CMS_get0_signers(cms.as_ptr());
        if stack.is_null() {
            return Err(ErrorStack::get());
        }
        let mut out = Vec::new();
        let n = sys::OPENSSL_sk_num(stack);
        for i in 0..n {
            let cert = sys::OPENSSL_sk_value(stack, i) as *mut sys::X509;
            if !cert.is_null() && sys::X509_up_ref(cert) == 1 {
                out.push(X509::from_ptr(cert));
            }
        }
        sys::OPENSSL_sk_free(stack);
        Ok(out)
    }
}

/// Every certificate `cms` carries (the signer's and the helpers for its path).
pub(crate) fn certificates(cms: &CmsContentInfoRef) -> Vec<X509> {
    // SAFETY: CMS_get1_certs returns a new stack of up-referenced certificates (or NULL when
    // there are none); `Stack::from_ptr` takes ownership and frees both on drop.
    unsafe {
        let stack = CMS_get1_certs(cms.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        let stack: Stack<X509> = Stack::from_ptr(stack);
        stack.iter().map(|c| c.to_owned()).collect()
    }
}

/// The digest algorithm of each SignerInfo in `cms`, in order.
pub(crate) fn signer_digests(cms: &CmsContentInfoRef) -> Vec<Nid> {
    // SAFETY: `cms` is live; the SignerInfo stack and the algorithm identifiers are borrowed
    // (get0) and not kept past this function.
    unsafe {
        let stack = CMS_get0_SignerInfos(cms.as_ptr());
        if stack.is_null() {
            return Vec::new();
        }
        let n = sys::OPENSSL_sk_num(stack);
        let mut out = Vec::new();
        for i in 0..n {
            let si = sys::OPENSSL_sk_value(stack, i) as *mut CMS_SignerInfo;
            if si.is_null() {
                continue;
            }
            let mut dig: *mut sys::X509_ALGOR = ptr::null_mut();
            CMS_SignerInfo_get0_algs(
                si,
                ptr::null_mut(),
                ptr::null_mut(),
                &mut dig,
                ptr::null_mut(),
            );
            if dig.is_null() {
                out.push(Nid::UNDEF);
                continue;
            }
            let mut obj: *const sys::ASN1_OBJECT = ptr::null();
            sys::X509_ALGOR_get0(&mut obj, ptr::null_mut(), ptr::null_mut(), dig);
            out.push(if obj.is_null() {
                Nid::UNDEF
            } else {
                Nid::from_raw(sys::OBJ_obj2nid(obj))
            });
        }
        out
    }
}
