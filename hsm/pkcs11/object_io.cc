#include "hsm/pkcs11/object_io.h"

namespace offkey::hsm::pkcs11 {

Template& Template::Bytes(CK_ATTRIBUTE_TYPE type, absl::string_view value) {
  bytes_.emplace_back(value);
  attrs_.push_back({type, bytes_.back().data(), bytes_.back().size()});
  return *this;
}

Template& Template::Secret(CK_ATTRIBUTE_TYPE type, const SecretBytes& value) {
  attrs_.push_back({type, const_cast<uint8_t*>(value.data()), value.size()});
  return *this;
}

Template& Template::Bool(CK_ATTRIBUTE_TYPE type, bool value) {
  bools_.push_back(value ? CK_TRUE : CK_FALSE);
  attrs_.push_back({type, &bools_.back(), sizeof(CK_BBOOL)});
  return *this;
}

Template& Template::Ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value) {
  ulongs_.push_back(value);
  attrs_.push_back({type, &ulongs_.back(), sizeof(CK_ULONG)});
  return *this;
}

CK_RV FindObjects(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, Template& tmpl,
                  std::vector<CK_OBJECT_HANDLE>* out, size_t limit) {
  out->clear();
  CK_RV rv = fn->C_FindObjectsInit(session, tmpl.data(), tmpl.size());
  if (rv != CKR_OK) return rv;
  CK_OBJECT_HANDLE batch[64];
  while (out->size() < limit) {
    CK_ULONG n = 0;
    rv = fn->C_FindObjects(session, batch, 64, &n);
    if (rv != CKR_OK || n == 0) break;
    out->insert(out->end(), batch, batch + n);
  }
  CK_RV final_rv = fn->C_FindObjectsFinal(session);
  return rv != CKR_OK ? rv : final_rv;
}

CK_RV GetBytes(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
               CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, std::string* out) {
  CK_RV rv = CKR_OK;
  // The value may grow between asking its size and reading it (another thread or
  // process changed the object, or a module reused the handle): ask again.
  for (int attempt = 0; attempt < 3; ++attempt) {
    CK_ATTRIBUTE attr = {type, nullptr, 0};
    rv = fn->C_GetAttributeValue(session, object, &attr, 1);
    if (rv != CKR_OK) return rv;
    if (attr.ulValueLen == CK_UNAVAILABLE_INFORMATION) return CKR_ATTRIBUTE_TYPE_INVALID;
    out->assign(attr.ulValueLen, '\0');
    attr.pValue = out->data();
    rv = fn->C_GetAttributeValue(session, object, &attr, 1);
    if (rv == CKR_OK) out->resize(attr.ulValueLen);
    if (rv != CKR_BUFFER_TOO_SMALL) return rv;
  }
  return rv;
}

CK_RV GetUlong(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
               CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, CK_ULONG* out) {
  CK_ATTRIBUTE attr = {type, out, sizeof(CK_ULONG)};
  return fn->C_GetAttributeValue(session, object, &attr, 1);
}

}  // namespace offkey::hsm::pkcs11
