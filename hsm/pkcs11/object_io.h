// Thin helpers over PKCS#11 object calls: attribute templates, searches, reads.
// They return CK_RV; callers inside Token::Run turn it into a status with CkRvStatus,
// which carries the CK_RV on so that Run can recover from session and token failures.
#ifndef OFFKEY_HSM_PKCS11_OBJECT_IO_H_
#define OFFKEY_HSM_PKCS11_OBJECT_IO_H_

#include <deque>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "base/secret_bytes.h"
#include "hsm/pkcs11/pkcs11.h"

namespace offkey::hsm::pkcs11 {

// An attribute template that owns the values it points to (except Secret(), which
// points into the caller's buffer so that key material is not copied). Not copyable:
// the attributes point into its own storage.
class Template {
 public:
  Template() = default;
  Template(const Template&) = delete;
  Template& operator=(const Template&) = delete;

  Template& Bytes(CK_ATTRIBUTE_TYPE type, absl::string_view value);
  Template& Secret(CK_ATTRIBUTE_TYPE type, const SecretBytes& value);
  Template& Bool(CK_ATTRIBUTE_TYPE type, bool value);
  Template& Ulong(CK_ATTRIBUTE_TYPE type, CK_ULONG value);

  CK_ATTRIBUTE* data() { return attrs_.data(); }
  CK_ULONG size() const { return attrs_.size(); }

 private:
  std::vector<CK_ATTRIBUTE> attrs_;
  std::deque<std::string> bytes_;
  std::deque<CK_BBOOL> bools_;
  std::deque<CK_ULONG> ulongs_;
};

// All objects matching `tmpl` (at most `limit`).
CK_RV FindObjects(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session, Template& tmpl,
                  std::vector<CK_OBJECT_HANDLE>* out, size_t limit = 4096);

// One attribute's value. CKR_ATTRIBUTE_TYPE_INVALID if the object lacks it. Asks again
// (up to three times) when the value grew between the two calls.
CK_RV GetBytes(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
               CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, std::string* out);
CK_RV GetUlong(const CK_FUNCTION_LIST* fn, CK_SESSION_HANDLE session,
               CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type, CK_ULONG* out);

}  // namespace offkey::hsm::pkcs11

#endif  // OFFKEY_HSM_PKCS11_OBJECT_IO_H_
