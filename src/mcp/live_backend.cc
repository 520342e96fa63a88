#include "mcp/live_backend.h"

#include "daemon/code_run.h"
#include "daemon/e2b/filesystem_internal.h"
#include "daemon/http_live.h"
#include "mcp/tools.h"
#include "proto/agent_proto.h"

namespace wb::mcp {

namespace asio = boost::asio;
using proto::FrameType;

namespace {

constexpr size_t kPiece = 256 * 1024;

// A sandbox that is gone, said so a model knows what to do next.
Error SandboxError(Error e, const std::string& id) {
  if (e.code == ErrorCode::kNotFound && e.call == "sandbox") {
    return Fail(ErrorCode::kNotFound, "sandbox", id,
                "no such sandbox (it was killed or its timeout expired): create one with "
                "create_sandbox, or omit sandbox_id for a fresh one");
  }
  if (e.code == ErrorCode::kFailedPrecondition && e.call == "sandbox") {
    return e.Wrap("sandbox " + id + " is paused or dead");
  }
  return e;
}

void Append(std::string& to, bool& truncated, std::string_view data) {
  size_t room = kMaxOutput - std::min(kMaxOutput, to.size());
  if (data.size() > room) truncated = true;
  to.append(data.substr(0, room));
}

}  // namespace

asio::awaitable<Result<std::string>> LiveBackend::CreateSandbox(SandboxSpec spec) {
  daemon::LiveCreateRequest r;
  r.image = spec.image.empty() ? std::string(kDefaultImage) : spec.image;
  r.timeout_s = spec.timeout_s;
  r.env = std::move(spec.env);
  r.metadata = std::move(spec.metadata);
  r.metadata["created_by"] = "mcp";
  r.main = std::vector<std::string>();  // no main: the sandbox waits for commands
  auto info = co_await live_.Create(std::move(r));
  if (!info.ok()) co_return info.error();
  co_return info->id;
}

asio::awaitable<Result<void>> LiveBackend::KillSandbox(std::string id) {
  auto r = co_await live_.Kill(id);
  if (!r.ok()) co_return SandboxError(r.error(), id);
  co_return Ok();
}

asio::awaitable<Result<std::vector<SandboxSummary>>> LiveBackend::ListSandboxes() {
  std::vector<SandboxSummary> out;
  for (const auto& i : live_.List({})) {
    SandboxSummary s;
    s.id = i.id;
    s.image = i.image;
    s.state = daemon::LiveStateName(i.state);
    s.created_ms = i.created_ms;
    s.expires_ms = i.expires_ms;
    s.metadata = i.metadata;
    out.push_back(std::move(s));
  }
  co_return out;
}

asio::awaitable<Result<CommandResult>> LiveBackend::Run(std::string id, CommandSpec cmd) {
  auto info = live_.Inspect(id);
  if (!info.ok()) co_return SandboxError(info.error(), id);
  proto::ExecRequest e;
  e.argv = std::move(cmd.argv);
  e.env = std::move(cmd.env);
  e.cwd = cmd.cwd.empty() ? info->cwd : cmd.cwd;
  e.user = info->user;  // the sandbox's default user, as for every live exec
  e.timeout_ms = cmd.timeout_ms;
  // Live processes are kept (docs/protocol.md): the agent answers with S,
  // and a daemon that loses this connection does not kill the command (its
  // timeout still does).
  e.keep = true;
  auto conn = co_await live_.Connect(id);
  if (!conn.ok()) co_return SandboxError(conn.error(), id);
  const std::string payload = proto::ToJson(e);
  auto sent = co_await (*conn)->Send(FrameType::kExec, payload);
  if (!sent.ok()) co_return sent.error().WithCode(ErrorCode::kUnavailable);
  CommandResult out;
  auto first = co_await (*conn)->ReadFrame();
  if (!first.ok()) co_return first.error().WithCode(ErrorCode::kUnavailable);
  if (first->type != FrameType::kStarted) {
    Error err = daemon::AgentError(*first, "exec");
    if (err.code == ErrorCode::kNotFound) {
      // The program is not in the image: a result (exit 127), as a shell says.
      out.exit_code = 127;
      out.not_started = true;
      out.stderr_data = e.argv.front() + ": " + err.detail + "\n";
      co_return out;
    }
    co_return err;
  }
  for (;;) {
    auto f = co_await (*conn)->ReadFrame();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    if (f->type == FrameType::kStdout) {
      Append(out.stdout_data, out.stdout_truncated, f->payload);
    } else if (f->type == FrameType::kStderr) {
      Append(out.stderr_data, out.stderr_truncated, f->payload);
    } else if (f->type == FrameType::kExit) {
      auto x = proto::ParseExecExit(f->payload);
      if (!x.ok()) co_return x.error().WithCode(ErrorCode::kUnavailable);
      out.exit_code = x->exit_code;
      out.timed_out = x->timed_out;
      out.stdout_truncated |= x->stdout_truncated;
      out.stderr_truncated |= x->stderr_truncated;
      if (!x->error.empty()) {
        out.not_started = x->exit_code == 127;
        out.stderr_data += x->error + "\n";
      }
      co_return out;
    } else {
      co_return daemon::AgentError(*f, "exec");
    }
  }
}

// A file operation on path, as the sandbox's default user (E2B's envd
// does the same: files belong to whoever runs the code).
Result<proto::FileRequest> LiveBackend::FileRequestFor(const std::string& id, const char* op,
                                                       const std::string& path) const {
  auto info = live_.Inspect(id);
  if (!info.ok()) return SandboxError(info.error(), id);
  proto::FileRequest fr;
  fr.op = op;
  fr.path = path;
  fr.user = info->user;
  return fr;
}

asio::awaitable<Result<std::string>> LiveBackend::ReadFile(std::string id, std::string path) {
  auto req = FileRequestFor(id, "read", path);
  if (!req.ok()) co_return req.error();
  proto::FileRequest& fr = *req;
  auto op = co_await daemon::e2b::OpenAgentFileOp(live_, id, fr);
  if (!op.ok()) co_return SandboxError(op.error(), id);
  auto st = proto::ParseFileStat(op->reply);
  if (!st.ok()) co_return st.error().WithCode(ErrorCode::kUnavailable);
  if (st->size > kMaxReadBytes) {
    op->conn->Close();
    co_return Fail(ErrorCode::kResourceExhausted, "read", path,
                   "the file has " + std::to_string(st->size) + " bytes, more than read_file's " +
                       std::to_string(kMaxReadBytes) +
                       ": read a part of it with run_command (head, tail, split)");
  }
  std::string data;
  for (;;) {
    auto f = co_await op->conn->ReadFrame();
    if (!f.ok()) co_return f.error().WithCode(ErrorCode::kUnavailable);
    if (f->type == FrameType::kStdout) {
      if (data.size() + f->payload.size() > kMaxReadBytes) {
        op->conn->Close();
        co_return Fail(ErrorCode::kResourceExhausted, "read", path,
                       "the file grew past " + std::to_string(kMaxReadBytes) + " bytes");
      }
      data += f->payload;
      continue;
    }
    if (f->type == FrameType::kFileEnd) break;
    co_return daemon::AgentError(*f, "read");
  }
  op->conn->Close();
  co_return data;
}

asio::awaitable<Result<void>> LiveBackend::WriteFile(std::string id, std::string path,
                                                     std::string data) {
  auto req = FileRequestFor(id, "write", path);
  if (!req.ok()) co_return req.error();
  proto::FileRequest& fr = *req;
  auto conn = co_await live_.Connect(id);
  if (!conn.ok()) co_return SandboxError(conn.error(), id);
  const std::string payload = proto::ToJson(fr);
  std::optional<Error> failed;
  auto sent = co_await (*conn)->Send(FrameType::kFile, payload);
  if (!sent.ok()) failed = sent.error().WithCode(ErrorCode::kUnavailable);
  for (size_t at = 0; !failed && at < data.size(); at += kPiece) {
    std::string_view piece = std::string_view(data).substr(at, kPiece);
    auto r = co_await (*conn)->Send(FrameType::kStdin, piece);
    if (!r.ok()) failed = r.error().WithCode(ErrorCode::kUnavailable);
  }
  if (!failed) {
    auto r = co_await (*conn)->Send(FrameType::kStdinClose, "");
    if (!r.ok()) failed = r.error().WithCode(ErrorCode::kUnavailable);
  }
  // The agent's answer: l after the last byte, or e (which may have come
  // early and broken our writes: it is still there to read).
  auto f = co_await (*conn)->ReadFrame();
  (*conn)->Close();
  if (!f.ok()) co_return failed.value_or(f.error().WithCode(ErrorCode::kUnavailable));
  if (f->type != FrameType::kFileReply) co_return daemon::AgentError(*f, "write");
  co_return Ok();
}

asio::awaitable<Result<std::vector<FileEntry>>> LiveBackend::ListFiles(std::string id,
                                                                       std::string path,
                                                                       uint32_t depth) {
  auto req = FileRequestFor(id, "list", path);
  if (!req.ok()) co_return req.error();
  proto::FileRequest& fr = *req;
  fr.depth = depth;
  auto reply = co_await daemon::e2b::AgentFileOp(live_, id, fr);
  if (!reply.ok()) co_return SandboxError(reply.error(), id);
  auto entries = proto::ParseFileEntries(*reply);
  if (!entries.ok()) co_return entries.error().WithCode(ErrorCode::kUnavailable);
  std::vector<FileEntry> out;
  for (const auto& e : *entries) out.push_back(FileEntry{e.path, e.type, e.size});
  co_return out;
}

asio::awaitable<Result<CodeResult>> LiveBackend::RunCode(std::string id, std::string language,
                                                         std::string code, uint64_t timeout_ms) {
  daemon::CodeRequest req;
  req.code = code;
  req.language = language;
  req.timeout_ms = timeout_ms;
  auto out = std::make_shared<CodeResult>();
  daemon::CodeLineFn on_line = [out](std::string line) -> asio::awaitable<bool> {
    AddInterpreterEvent(line, *out);
    co_return true;
  };
  auto ran = co_await daemon::RunCode(live_, id, std::move(req), on_line);
  if (ran.ok()) co_return std::move(*out);
  if (ran.error().code == ErrorCode::kDeadlineExceeded) {
    out->command.timed_out = true;
    out->command.exit_code = 137;
    co_return std::move(*out);
  }
  // No interpreter in this sandbox's image: run the code as a program.
  if (ran.error().code == ErrorCode::kUnavailable) {
    co_return co_await Backend::RunCode(std::move(id), std::move(language), std::move(code),
                                        timeout_ms);
  }
  co_return ran.error();
}

}  // namespace wb::mcp
