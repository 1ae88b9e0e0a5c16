// PipelineStream: one KeyService.Pipeline stream, driven by the thread that calls it.
//
// Exchange() sends one item and waits for its answer on the stream's own completion
// queue, on the caller's thread: an operation costs neither a new HTTP/2 stream (with
// its headers and per-call setup on both ends) nor a hand-off to a gRPC thread. That
// makes it the cheapest way for a blocking caller, such as an nginx worker in its
// handshake, to reach offkeyd. One caller at a time; Client keeps a pool of them.
#ifndef OFFKEY_CLIENT_PIPELINE_STREAM_H_
#define OFFKEY_CLIENT_PIPELINE_STREAM_H_

#include <cstdint>
#include <memory>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "offkey/v1/key_service.grpc.pb.h"

namespace offkey::client {

class PipelineStream {
 public:
  // Opens the stream (lazily: nothing is sent before the first Exchange).
  explicit PipelineStream(v1::KeyService::Stub& stub);
  // Half-closes a healthy stream and waits up to a second for offkeyd to end it;
  // cancels a broken one. Returns once gRPC has let go of every operation.
  ~PipelineStream();
  PipelineStream(const PipelineStream&) = delete;
  PipelineStream& operator=(const PipelineStream&) = delete;

  // Sends `request` (with a fresh id) and waits for its answer until `deadline`. OK
  // means `response` holds offkeyd's answer for the item, whose own status may still be
  // an error. Otherwise the status is the transport's: UNAVAILABLE when offkeyd cannot
  // be reached or went away, DEADLINE_EXCEEDED, or what offkeyd ended the stream with;
  // the stream is then broken and must be dropped.
  grpc::Status Exchange(v1::PipelineRequest& request, v1::PipelineResponse* response,
                        absl::Time deadline);

  bool broken() const { return broken_; }
  absl::Time opened() const { return opened_; }

  // Completion queue tags; at most one operation of each kind is outstanding.
  // kStart is never returned (corked headers, see the constructor).
  enum Tag : intptr_t { kStart = 0, kWrite, kRead, kWritesDone, kFinish, kTags };

 private:
  void Begin(Tag tag) { pending_[tag] = true; }
  // Waits until `tag` completes (recording any other completion meanwhile) and returns
  // whether it succeeded; false with *timed_out set when the deadline came first.
  bool Await(Tag tag, absl::Time deadline, bool* timed_out);
  // Marks the stream broken, cancelling it when `cancel`, and returns the status it
  // ended with (waiting for it until `deadline`).
  grpc::Status Break(absl::Time deadline, bool cancel);

  grpc::ClientContext context_;
  grpc::CompletionQueue cq_;
  std::unique_ptr<
      grpc::ClientAsyncReaderWriterInterface<v1::PipelineRequest, v1::PipelineResponse>>
      call_;
  bool pending_[kTags] = {};
  bool succeeded_[kTags] = {};
  bool started_ = false;
  bool finish_started_ = false;
  bool broken_ = false;
  grpc::Status final_status_;
  uint64_t next_id_ = 1;
  const absl::Time opened_;
};

}  // namespace offkey::client

#endif  // OFFKEY_CLIENT_PIPELINE_STREAM_H_
