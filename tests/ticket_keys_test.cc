// Session-ticket keys end to end: a real offkeyd with its admin listener over a real
// SoftHSM2 token. Ticket-key sets made, listed, shown and destroyed through KeyAdmin;
// GetTicketKeys, SealTicket and UnsealTicket through KeyService, their grants, limits
// and audit lines; two offkeyd processes on one token agreeing on every key.
#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "base/testing/secret_ledger.h"
#include "google/protobuf/unknown_field_set.h"
#include "hsm/pkcs11/pkcs11_key_store.h"
#include "offkey/v1/key_admin.grpc.pb.h"
#include "offkey/v1/key_service.grpc.pb.h"
#include "service/tickets/ticket_crypto.h"
#include "tests/handshake_inputs.h"
#include "tests/offkeyd_fixture.h"

namespace offkey::tests {
namespace {

using ::offkey::testing::RecordSecret;
using offkey::v1::UnsealTicketResponse;

constexpr char kAdmin[] = "spiffe://test.offkey/admin";

class TicketKeysTest : public OffkeydTest {
 protected:
  void Configure(offkey::v1::ServerConfig* config) override {
    config->set_admin_listen_address("127.0.0.1:0");
    config->add_admin_identities(kAdmin);
    config->mutable_audit()->set_path(AuditPath());
    offkey::v1::Grant* tickets = config->mutable_policy()->add_grants();
    tickets->add_identities(kTerminator);
    tickets->add_operations(offkey::v1::GET_TICKET_KEYS);
    tickets->add_operations(offkey::v1::SEAL_TICKET);
    tickets->add_operations(offkey::v1::UNSEAL_TICKET);
    for (const char* set : {"edge", "callback", "ghost", "doomed"}) {
      tickets->add_ticket_key_sets(set);
    }
    // The reader may fetch the keys of "edge" only, and seal nothing.
    offkey::v1::Grant* reader = config->mutable_policy()->add_grants();
    reader->add_identities(kReader);
    reader->add_operations(offkey::v1::GET_TICKET_KEYS);
    reader->add_ticket_key_sets("edge");
  }
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(OffkeydTest::SetUp());
    admin_ = AdminStub(kAdmin);
    terminator_ = Stub(kTerminator);
  }

  grpc::Status CreateSet(const std::string& name, int64_t period,
                         offkey::v1::TicketKeySetInfo* info = nullptr) {
    offkey::v1::CreateTicketKeySetRequest request;
    request.set_name(name);
    request.set_rotation_period_seconds(period);
    offkey::v1::CreateTicketKeySetResponse response;
    grpc::Status status = admin_->CreateTicketKeySet(Context().get(), request, &response);
    if (info != nullptr) *info = response.ticket_key_set();
    return status;
  }
  grpc::Status DestroySet(offkey::v1::KeyAdmin::Stub* admin, const std::string& name) {
    offkey::v1::DestroyTicketKeySetRequest request;
    request.set_name(name);
    request.set_force(true);
    offkey::v1::DestroyTicketKeySetResponse response;
    return admin->DestroyTicketKeySet(Context().get(), request, &response);
  }
  // GetTicketKeys (the fixture's: AES and HMAC keys recorded in the secret ledger), with
  // the key names recorded too, so that the audit checks below cover them.
  grpc::Status GetKeys(offkey::v1::KeyService::Stub* stub, const std::string& set,
                       offkey::v1::GetTicketKeysResponse* response) {
    grpc::Status status = GetTicketKeys(stub, set, response);
    for (const offkey::v1::TicketKey* key :
         {&response->previous(), &response->current(), &response->next()}) {
      RecordSecret("ticket key name", key->name());
    }
    return status;
  }
  grpc::Status Seal(offkey::v1::KeyService::Stub* stub, const std::string& set,
                    const std::string& plaintext,
                    offkey::v1::SealTicketResponse* response) {
    offkey::v1::SealTicketRequest request;
    request.set_ticket_key_set(set);
    request.set_plaintext(plaintext);
    request.mutable_context()->set_sni("www.example.org");
    return stub->SealTicket(Context().get(), request, response);
  }
  grpc::Status Unseal(offkey::v1::KeyService::Stub* stub, const std::string& set,
                      const std::string& sealed, UnsealTicketResponse* response) {
    offkey::v1::UnsealTicketRequest request;
    request.set_ticket_key_set(set);
    request.set_sealed(sealed);
    return stub->UnsealTicket(Context().get(), request, response);
  }
  std::vector<std::string> AuditLines() {
    std::ifstream in(AuditPath());
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
  }
  // A second offkeyd over its own session on the same token, as a second replica.
  std::unique_ptr<service::OffkeyServer> SecondServer() {
    auto store = hsm::pkcs11::Pkcs11KeyStore::Create(token_.Options());
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    second_store_ = *std::move(store);
    auto server = service::OffkeyServer::Start(config_, second_store_.get(), Options());
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  std::unique_ptr<offkey::v1::KeyAdmin::Stub> admin_;
  std::unique_ptr<offkey::v1::KeyService::Stub> terminator_;
  std::unique_ptr<hsm::pkcs11::Pkcs11KeyStore> second_store_;
};

// `sealed` with its epoch field (bytes 1..8, big-endian) replaced.
std::string WithEpoch(std::string sealed, int64_t epoch) {
  uint64_t v = static_cast<uint64_t>(epoch);
  for (int i = 8; i >= 1; --i) {
    sealed[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  return sealed;
}

TEST_F(TicketKeysTest, AdminCreatesListsShowsAndDestroys) {
  offkey::v1::TicketKeySetInfo edge;
  const absl::Time before = absl::Now();
  ASSERT_TRUE(CreateSet("edge", 0, &edge).ok());
  const absl::Time after = absl::Now();
  EXPECT_EQ(edge.name(), "edge");
  EXPECT_EQ(edge.rotation_period_seconds(), 3600);  // 0 means one hour.
  EXPECT_GE(edge.create_time(), absl::ToUnixSeconds(before) - 1);
  EXPECT_LE(edge.create_time(), absl::ToUnixSeconds(after) + 1);
  EXPECT_GE(edge.current_epoch(), absl::ToUnixSeconds(before) / 3600);
  EXPECT_LE(edge.current_epoch(), absl::ToUnixSeconds(after) / 3600);
  EXPECT_EQ(edge.next_rotation_time(), (edge.current_epoch() + 1) * 3600);
  offkey::v1::TicketKeySetInfo fast;
  ASSERT_TRUE(CreateSet("callback", 10, &fast).ok());
  EXPECT_EQ(fast.rotation_period_seconds(), 10);
  EXPECT_EQ(fast.next_rotation_time(), (fast.current_epoch() + 1) * 10);

  // Refusals: periods out of range, a name taken, a bad name, a caller without the role.
  EXPECT_EQ(CreateSet("short", 9).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateSet("long", 604801).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(CreateSet("negative", -1).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(CreateSet("week", 604800).ok());
  EXPECT_EQ(CreateSet("edge", 60).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  EXPECT_EQ(CreateSet("a b", 60).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto not_admin = AdminStub(kTerminator);
  {
    offkey::v1::CreateTicketKeySetRequest request;
    request.set_name("mine");
    offkey::v1::CreateTicketKeySetResponse response;
    EXPECT_EQ(
        not_admin->CreateTicketKeySet(Context().get(), request, &response).error_code(),
        grpc::StatusCode::PERMISSION_DENIED);
  }

  offkey::v1::ListTicketKeySetsResponse list;
  ASSERT_TRUE(admin_->ListTicketKeySets(Context().get(), {}, &list).ok());
  std::vector<std::string> names;
  for (const auto& set : list.ticket_key_sets()) names.push_back(set.name());
  EXPECT_EQ(names, (std::vector<std::string>{"callback", "edge", "week"}));

  offkey::v1::GetTicketKeySetRequest get;
  get.set_name("edge");
  offkey::v1::GetTicketKeySetResponse got;
  ASSERT_TRUE(admin_->GetTicketKeySet(Context().get(), get, &got).ok());
  EXPECT_EQ(got.ticket_key_set().rotation_period_seconds(), 3600);
  EXPECT_EQ(got.ticket_key_set().create_time(), edge.create_time());
  get.set_name("absent");
  EXPECT_EQ(admin_->GetTicketKeySet(Context().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Destruction needs force, and is final.
  offkey::v1::DestroyTicketKeySetRequest destroy;
  destroy.set_name("week");
  offkey::v1::DestroyTicketKeySetResponse destroyed;
  EXPECT_EQ(
      admin_->DestroyTicketKeySet(Context().get(), destroy, &destroyed).error_code(),
      grpc::StatusCode::INVALID_ARGUMENT);
  ASSERT_TRUE(DestroySet(admin_.get(), "week").ok());
  EXPECT_EQ(DestroySet(admin_.get(), "week").error_code(), grpc::StatusCode::NOT_FOUND);
  get.set_name("week");
  EXPECT_EQ(admin_->GetTicketKeySet(Context().get(), get, &got).error_code(),
            grpc::StatusCode::NOT_FOUND);

  // Audited like the other admin calls, naming the set.
  bool created = false, refused = false;
  for (const std::string& line : AuditLines()) {
    if (line.find("\"operation\":\"admin.create-ticket-key-set\"") != line.npos &&
        line.find("\"ticket_key_set\":\"edge\"") != line.npos &&
        line.find(kAdmin) != line.npos && line.find("\"outcome\":\"OK\"") != line.npos) {
      created = true;
    }
    if (line.find("admin.create-ticket-key-set") != line.npos &&
        line.find(kTerminator) != line.npos &&
        line.find("PERMISSION_DENIED") != line.npos) {
      refused = true;
    }
  }
  EXPECT_TRUE(created);
  EXPECT_TRUE(refused);
}

TEST_F(TicketKeysTest, KeysForThreeEpochsIdenticalOnTwoServers) {
  ASSERT_TRUE(CreateSet("edge", 3600).ok());
  offkey::v1::GetTicketKeysResponse keys;
  ASSERT_TRUE(GetKeys(terminator_.get(), "edge", &keys).ok());
  EXPECT_EQ(keys.rotation_period_seconds(), 3600);
  const int64_t current = keys.current().epoch();
  EXPECT_EQ(current, keys.server_time() / 3600);
  EXPECT_LE(std::abs(keys.server_time() - absl::ToUnixSeconds(absl::Now())), 5);
  EXPECT_EQ(keys.previous().epoch(), current - 1);
  EXPECT_EQ(keys.next().epoch(), current + 1);
  std::map<int64_t, const offkey::v1::TicketKey*> by_epoch;
  for (const offkey::v1::TicketKey* key :
       {&keys.previous(), &keys.current(), &keys.next()}) {
    EXPECT_EQ(key->name().size(), 16u);
    EXPECT_EQ(key->aes_key().size(), 32u);
    EXPECT_EQ(key->hmac_key().size(), 32u);
    EXPECT_EQ(key->not_before(), key->epoch() * 3600);
    EXPECT_EQ(key->not_after(), (key->epoch() + 1) * 3600);
    by_epoch[key->epoch()] = key;
  }
  EXPECT_GE(keys.server_time(), keys.current().not_before());
  EXPECT_LT(keys.server_time(), keys.current().not_after());
  EXPECT_NE(keys.previous().aes_key(), keys.current().aes_key());
  EXPECT_NE(keys.current().aes_key(), keys.next().aes_key());
  EXPECT_NE(keys.current().name(), keys.next().name());
  EXPECT_NE(keys.current().aes_key(), keys.current().hmac_key());

  // The reader holds a GET_TICKET_KEYS grant on this set: the same keys.
  auto reader = Stub(kReader);
  offkey::v1::GetTicketKeysResponse again;
  ASSERT_TRUE(GetKeys(reader.get(), "edge", &again).ok());
  EXPECT_EQ(again.current().epoch(), current);
  EXPECT_EQ(again.current().aes_key(), keys.current().aes_key());

  // A second offkeyd on the same token derives the same keys for the same epochs.
  std::unique_ptr<service::OffkeyServer> second = SecondServer();
  ASSERT_NE(second, nullptr);
  auto second_stub =
      offkey::v1::KeyService::NewStub(Channel(kTerminator, ca_, second->port()));
  offkey::v1::GetTicketKeysResponse theirs;
  ASSERT_TRUE(GetKeys(second_stub.get(), "edge", &theirs).ok());
  int compared = 0;
  for (const offkey::v1::TicketKey* key :
       {&theirs.previous(), &theirs.current(), &theirs.next()}) {
    auto mine = by_epoch.find(key->epoch());
    if (mine == by_epoch.end()) continue;  // Only across an hour boundary.
    EXPECT_EQ(key->name(), mine->second->name());
    EXPECT_EQ(key->aes_key(), mine->second->aes_key());
    EXPECT_EQ(key->hmac_key(), mine->second->hmac_key());
    ++compared;
  }
  EXPECT_GE(compared, 2);

  // What one replica seals the other opens.
  const std::string state = Random(300);
  RecordSecret("session state", state);
  offkey::v1::SealTicketResponse sealed;
  ASSERT_TRUE(Seal(terminator_.get(), "edge", state, &sealed).ok());
  UnsealTicketResponse opened;
  ASSERT_TRUE(Unseal(second_stub.get(), "edge", sealed.sealed(), &opened).ok());
  EXPECT_EQ(opened.result(), UnsealTicketResponse::OPENED);
  EXPECT_EQ(opened.plaintext(), state);
  second->Shutdown(absl::Seconds(1));
}

TEST_F(TicketKeysTest, SealUnsealAndWhatDoesNotOpen) {
  ASSERT_TRUE(CreateSet("edge", 3600).ok());
  ASSERT_TRUE(CreateSet("callback", 3600).ok());
  const std::string state = Random(1000);
  RecordSecret("session state", state);
  offkey::v1::SealTicketResponse sealed;
  ASSERT_TRUE(Seal(terminator_.get(), "edge", state, &sealed).ok());
  const int64_t current = absl::ToUnixSeconds(absl::Now()) / 3600;
  EXPECT_LE(std::abs(sealed.epoch() - current), 1);
  EXPECT_EQ(sealed.sealed().size(),
            state.size() + service::tickets::kSealedOverheadBytes);
  EXPECT_EQ(sealed.sealed().find(state.substr(0, 32)), std::string::npos);

  UnsealTicketResponse opened;
  ASSERT_TRUE(Unseal(terminator_.get(), "edge", sealed.sealed(), &opened).ok());
  EXPECT_EQ(opened.result(), UnsealTicketResponse::OPENED);
  EXPECT_EQ(opened.plaintext(), state);
  EXPECT_FALSE(opened.renew());
  EXPECT_EQ(opened.epoch(), sealed.epoch());

  // Each seal is fresh: the same state seals to different bytes.
  offkey::v1::SealTicketResponse resealed;
  ASSERT_TRUE(Seal(terminator_.get(), "edge", state, &resealed).ok());
  EXPECT_NE(resealed.sealed(), sealed.sealed());

  // Tampered: INVALID, nothing opened.
  std::string tampered = sealed.sealed();
  tampered[tampered.size() / 2] ^= 0x40;
  UnsealTicketResponse bad;
  ASSERT_TRUE(Unseal(terminator_.get(), "edge", tampered, &bad).ok());
  EXPECT_EQ(bad.result(), UnsealTicketResponse::INVALID);
  EXPECT_TRUE(bad.plaintext().empty());
  // Another set's ticket: INVALID.
  ASSERT_TRUE(Unseal(terminator_.get(), "callback", sealed.sealed(), &bad).ok());
  EXPECT_EQ(bad.result(), UnsealTicketResponse::INVALID);
  // Not a ticket at all.
  ASSERT_TRUE(Unseal(terminator_.get(), "edge", "not a ticket", &bad).ok());
  EXPECT_EQ(bad.result(), UnsealTicketResponse::INVALID);

  // A ticket claiming an epoch two periods old, or two ahead: EXPIRED, with the epoch
  // it names (decided before any key is touched, so the rest need not be valid).
  for (int64_t epoch : {sealed.epoch() - 2, sealed.epoch() + 2, int64_t{0}}) {
    UnsealTicketResponse expired;
    ASSERT_TRUE(
        Unseal(terminator_.get(), "edge", WithEpoch(sealed.sealed(), epoch), &expired)
            .ok());
    EXPECT_EQ(expired.result(), UnsealTicketResponse::EXPIRED) << epoch;
    EXPECT_EQ(expired.epoch(), epoch);
    EXPECT_TRUE(expired.plaintext().empty());
  }
  // One epoch back is inside the window: it is a different key, so this forgery is
  // INVALID rather than EXPIRED.
  UnsealTicketResponse previous;
  ASSERT_TRUE(Unseal(terminator_.get(), "edge",
                     WithEpoch(sealed.sealed(), sealed.epoch() - 1), &previous)
                  .ok());
  EXPECT_EQ(previous.result(), UnsealTicketResponse::INVALID);
}

TEST_F(TicketKeysTest, LimitsAndBadRequests) {
  ASSERT_TRUE(CreateSet("edge", 3600).ok());
  offkey::v1::SealTicketResponse sealed;
  EXPECT_EQ(Seal(terminator_.get(), "edge", std::string(16 * 1024 + 1, 'x'), &sealed)
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_TRUE(Seal(terminator_.get(), "edge", std::string(16 * 1024, 'x'), &sealed).ok());
  EXPECT_LE(sealed.sealed().size(), 16u * 1024 + 64);
  UnsealTicketResponse opened;
  EXPECT_TRUE(Unseal(terminator_.get(), "edge", sealed.sealed(), &opened).ok());
  EXPECT_EQ(opened.result(), UnsealTicketResponse::OPENED);
  EXPECT_EQ(Seal(terminator_.get(), "edge", "", &sealed).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Unseal(terminator_.get(), "edge", std::string(16 * 1024 + 65, 'x'), &opened)
                .error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(Unseal(terminator_.get(), "edge", "", &opened).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  offkey::v1::GetTicketKeysResponse keys;
  EXPECT_EQ(GetKeys(terminator_.get(), "", &keys).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GetKeys(terminator_.get(), "a b", &keys).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(GetKeys(terminator_.get(), std::string(65, 'a'), &keys).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // A request far over its size is refused before it queues.
  offkey::v1::GetTicketKeysRequest huge;
  huge.set_ticket_key_set("edge");
  huge.GetReflection()->MutableUnknownFields(&huge)->AddLengthDelimited(
      99, std::string(4096, 'x'));
  EXPECT_EQ(terminator_->GetTicketKeys(Context().get(), huge, &keys).error_code(),
            grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(TicketKeysTest, GrantsAreNeededAndUnknownSetsLookTheSame) {
  ASSERT_TRUE(CreateSet("edge", 3600).ok());
  ASSERT_TRUE(CreateSet("other", 3600).ok());
  auto stranger = Stub(kStranger);
  auto reader = Stub(kReader);
  offkey::v1::GetTicketKeysResponse keys;
  offkey::v1::SealTicketResponse sealed;
  UnsealTicketResponse opened;
  ASSERT_TRUE(Seal(terminator_.get(), "edge", "session state", &sealed).ok());
  // No grant at all.
  EXPECT_EQ(GetKeys(stranger.get(), "edge", &keys).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Seal(stranger.get(), "edge", "session state", &sealed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Unseal(stranger.get(), "edge", sealed.sealed(), &opened).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(opened.plaintext().empty());
  // A grant for another operation, or for another set.
  EXPECT_EQ(Seal(reader.get(), "edge", "session state", &sealed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(GetKeys(reader.get(), "other", &keys).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(GetKeys(terminator_.get(), "other", &keys).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(keys.current().aes_key().empty());
  // A granted set that does not exist answers as a set without a grant does.
  grpc::Status absent = GetKeys(terminator_.get(), "ghost", &keys);
  grpc::Status forbidden = GetKeys(terminator_.get(), "other", &keys);
  EXPECT_EQ(absent.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(absl::StrReplaceAll(absent.error_message(), {{"ghost", "SET"}}),
            absl::StrReplaceAll(forbidden.error_message(), {{"other", "SET"}}));
}

TEST_F(TicketKeysTest, DestroyedSetIsRefused) {
  ASSERT_TRUE(CreateSet("doomed", 3600).ok());
  ASSERT_TRUE(CreateSet("edge", 3600).ok());
  offkey::v1::SealTicketResponse sealed;
  ASSERT_TRUE(Seal(terminator_.get(), "doomed", "session state", &sealed).ok());
  offkey::v1::GetTicketKeysResponse keys;
  ASSERT_TRUE(GetKeys(terminator_.get(), "doomed", &keys).ok());

  // Through this replica: refused at once, though its keys were just cached.
  ASSERT_TRUE(DestroySet(admin_.get(), "doomed").ok());
  EXPECT_EQ(GetKeys(terminator_.get(), "doomed", &keys).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  UnsealTicketResponse opened;
  EXPECT_EQ(Unseal(terminator_.get(), "doomed", sealed.sealed(), &opened).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Seal(terminator_.get(), "doomed", "session state", &sealed).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // A set made again under the same name is a new root: old tickets do not open.
  ASSERT_TRUE(CreateSet("doomed", 3600).ok());
  ASSERT_TRUE(Unseal(terminator_.get(), "doomed", sealed.sealed(), &opened).ok());
  EXPECT_EQ(opened.result(), UnsealTicketResponse::INVALID);

  // Through another replica: refused here within the cache's recheck interval (5 s).
  ASSERT_TRUE(GetKeys(terminator_.get(), "edge", &keys).ok());
  std::unique_ptr<service::OffkeyServer> second = SecondServer();
  ASSERT_NE(second, nullptr);
  auto second_admin =
      offkey::v1::KeyAdmin::NewStub(Channel(kAdmin, ca_, second->admin_port()));
  const absl::Time destroyed_at = absl::Now();
  ASSERT_TRUE(DestroySet(second_admin.get(), "edge").ok());
  grpc::Status status;
  while (absl::Now() < destroyed_at + absl::Seconds(15)) {
    status = GetKeys(terminator_.get(), "edge", &keys);
    if (!status.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_LT(absl::Now() - destroyed_at, absl::Seconds(5) + absl::Seconds(2));
  second->Shutdown(absl::Seconds(1));
}

TEST_F(TicketKeysTest, AuditedAndCountedWithoutSecrets) {
  ASSERT_TRUE(CreateSet("edge", 3600).ok());
  const std::string state = Random(200);
  RecordSecret("session state", state);
  offkey::v1::GetTicketKeysResponse keys;
  ASSERT_TRUE(GetKeys(terminator_.get(), "edge", &keys).ok());
  offkey::v1::SealTicketResponse sealed;
  ASSERT_TRUE(Seal(terminator_.get(), "edge", state, &sealed).ok());
  UnsealTicketResponse opened;
  ASSERT_TRUE(Unseal(terminator_.get(), "edge", sealed.sealed(), &opened).ok());
  ASSERT_TRUE(
      Unseal(terminator_.get(), "edge", WithEpoch(sealed.sealed(), 1), &opened).ok());
  auto stranger = Stub(kStranger);
  offkey::v1::GetTicketKeysResponse refused;
  EXPECT_FALSE(GetKeys(stranger.get(), "edge", &refused).ok());

  std::vector<std::string> ticket_lines;
  for (const std::string& line : AuditLines()) {
    if (line.find("ticket") != line.npos && line.find("admin.") == line.npos) {
      ticket_lines.push_back(line);
    }
  }
  ASSERT_EQ(ticket_lines.size(), 5u);
  const auto has = [](const std::string& line, const std::string& what) {
    return line.find(what) != std::string::npos;
  };
  const std::string terminator = absl::StrCat("\"identity\":\"", kTerminator, "\"");
  EXPECT_TRUE(has(ticket_lines[0], "\"operation\":\"get-ticket-keys\""));
  EXPECT_TRUE(has(ticket_lines[0], "\"ticket_key_set\":\"edge\""));
  EXPECT_TRUE(has(ticket_lines[0], terminator));
  EXPECT_TRUE(has(ticket_lines[0], "\"outcome\":\"OK\""));
  EXPECT_TRUE(has(ticket_lines[1], "\"operation\":\"seal-ticket\""));
  EXPECT_TRUE(has(ticket_lines[1], "\"sni\":\"www.example.org\""));
  EXPECT_TRUE(has(ticket_lines[2], "\"operation\":\"unseal-ticket\""));
  EXPECT_TRUE(has(ticket_lines[2], "\"ticket_result\":\"OPENED\""));
  EXPECT_TRUE(has(ticket_lines[3], "\"ticket_result\":\"EXPIRED\""));
  EXPECT_TRUE(has(ticket_lines[4], "\"outcome\":\"PERMISSION_DENIED\""));
  EXPECT_TRUE(has(ticket_lines[4], kStranger));

  // No key, session state or ticket, raw or in hex.
  std::string all;
  for (const std::string& line : AuditLines()) all += line + "\n";
  // (What the OPENED answer carried is `state`, checked equal in the tests above.)
  std::vector<std::string> secrets = {state, sealed.sealed().substr(9)};
  for (const offkey::v1::TicketKey* key :
       {&keys.previous(), &keys.current(), &keys.next()}) {
    secrets.push_back(key->name());
    secrets.push_back(key->aes_key());
    secrets.push_back(key->hmac_key());
  }
  for (const std::string& secret : secrets) {
    if (secret.size() < 12) continue;
    for (const std::string& form :
         {secret.substr(0, 12), absl::BytesToHexString(secret).substr(0, 24),
          absl::Base64Escape(secret).substr(0, 16)}) {
      EXPECT_EQ(all.find(form), std::string::npos) << "audit log leaks " << form;
    }
  }

  EXPECT_EQ(OperationCount("get-ticket-keys"), 2);
  EXPECT_EQ(OperationCount("seal-ticket"), 1);
  EXPECT_EQ(OperationCount("unseal-ticket"), 2);
}

}  // namespace
}  // namespace offkey::tests
