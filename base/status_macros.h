// Status propagation macros. The Abseil release in Debian 12 does not ship its own.
#ifndef OFFKEY_BASE_STATUS_MACROS_H_
#define OFFKEY_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define OFFKEY_STATUS_CONCAT_INNER_(a, b) a##b
#define OFFKEY_STATUS_CONCAT_(a, b) OFFKEY_STATUS_CONCAT_INNER_(a, b)

// Returns the status of `expr` from the enclosing function if it is not OK.
#define OFFKEY_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status offkey_status_ = (expr);          \
    if (!offkey_status_.ok()) return offkey_status_; \
  } while (false)

// Evaluates `rexpr` (an absl::StatusOr<T>); on error returns its status, otherwise
// moves the value into `lhs`, which may be a declaration (`auto x`).
#define OFFKEY_ASSIGN_OR_RETURN(lhs, rexpr)                                             \
  OFFKEY_ASSIGN_OR_RETURN_IMPL_(OFFKEY_STATUS_CONCAT_(offkey_statusor_, __LINE__), lhs, \
                                rexpr)

#define OFFKEY_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                  \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // OFFKEY_BASE_STATUS_MACROS_H_
