#include "client/pipeline_stream.h"

#include "absl/strings/str_cat.h"

namespace offkey::client {
namespace {

// A tag is the address of its slot here; nothing is ever stored in the slots.
char tag_slots[PipelineStream::kTags];

void* AsTag(intptr_t tag) { return &tag_slots[tag]; }
intptr_t FromTag(void* tag) { return static_cast<char*>(tag) - tag_slots; }

}  // namespace

PipelineStream::PipelineStream(v1::KeyService::Stub& stub) : opened_(absl::Now()) {
  // The call's headers leave with its first item rather than in a round of their own;
  // StartCall then completes nothing (its tag is never returned).
  context_.set_initial_metadata_corked(true);
  call_ = stub.PrepareAsyncPipeline(&context_, &cq_);
}

PipelineStream::~PipelineStream() {
  if (started_) {
    bool timed_out = false;
    if (!broken_ && !finish_started_) {
      // A healthy stream is ended the polite way, so offkeyd logs no cancellation.
      call_->WritesDone(AsTag(kWritesDone));
      Begin(kWritesDone);
      call_->Finish(&final_status_, AsTag(kFinish));
      Begin(kFinish);
      finish_started_ = true;
      if (!Await(kFinish, absl::Now() + absl::Seconds(1), &timed_out) && timed_out) {
        context_.TryCancel();
      }
    } else {
      context_.TryCancel();
      if (!finish_started_) {
        call_->Finish(&final_status_, AsTag(kFinish));
        Begin(kFinish);
        finish_started_ = true;
      }
    }
    // Once the call is over or cancelled, every operation started on it completes.
    for (intptr_t tag = 0; tag < kTags; ++tag) {
      Await(static_cast<Tag>(tag), absl::InfiniteFuture(), &timed_out);
    }
  }
  cq_.Shutdown();
  void* tag;
  bool ok;
  while (cq_.Next(&tag, &ok)) {
  }
}

grpc::Status PipelineStream::Exchange(v1::PipelineRequest& request,
                                      v1::PipelineResponse* response,
                                      absl::Time deadline) {
  if (broken_) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the Pipeline stream is broken");
  }
  if (!started_) {
    call_->StartCall(AsTag(kStart));
    started_ = true;
  }
  request.set_id(next_id_++);
  response->Clear();
  call_->Write(request, AsTag(kWrite));
  Begin(kWrite);
  call_->Read(response, AsTag(kRead));
  Begin(kRead);
  for (Tag tag : {kWrite, kRead}) {
    bool timed_out = false;
    if (Await(tag, deadline, &timed_out)) continue;
    if (timed_out) {
      Break(deadline, /*cancel=*/true);
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                          "Deadline Exceeded (no answer on the Pipeline stream in time)");
    }
    return Break(deadline, /*cancel=*/false);
  }
  if (response->id() != request.id()) {
    Break(deadline, /*cancel=*/true);
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        absl::StrCat("offkeyd answered Pipeline item ", request.id(),
                                     " with the id ", response->id()));
  }
  return grpc::Status::OK;
}

bool PipelineStream::Await(Tag tag, absl::Time deadline, bool* timed_out) {
  *timed_out = false;
  while (pending_[tag]) {
    void* got = nullptr;
    bool ok = false;
    switch (cq_.AsyncNext(&got, &ok, absl::ToChronoTime(deadline))) {
      case grpc::CompletionQueue::TIMEOUT:
        *timed_out = true;
        return false;
      case grpc::CompletionQueue::SHUTDOWN:
        return false;  // Not reached: the queue is shut down only once all is drained.
      case grpc::CompletionQueue::GOT_EVENT: {
        const auto done = static_cast<Tag>(FromTag(got));
        pending_[done] = false;
        succeeded_[done] = ok;
        break;
      }
    }
  }
  return succeeded_[tag];
}

grpc::Status PipelineStream::Break(absl::Time deadline, bool cancel) {
  broken_ = true;
  if (cancel) {
    context_.TryCancel();
    return grpc::Status::CANCELLED;
  }
  // A failed read or write means the call is over: ask how it ended. gRPC wants no read
  // outstanding when Finish is called; a read on a call that is over fails at once.
  bool timed_out = false;
  if (pending_[kRead]) Await(kRead, deadline, &timed_out);
  if (!timed_out) {
    call_->Finish(&final_status_, AsTag(kFinish));
    Begin(kFinish);
    finish_started_ = true;
    Await(kFinish, deadline, &timed_out);
  }
  if (timed_out) {
    context_.TryCancel();
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                        "Deadline Exceeded (the Pipeline stream did not end in time)");
  }
  if (final_status_.ok()) {
    // offkeyd ended the stream (shutting down, say) before answering: try elsewhere.
    return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                        "offkeyd ended the Pipeline stream before answering");
  }
  return final_status_;
}

}  // namespace offkey::client
