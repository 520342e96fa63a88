// The MCP core and tool layer over a fake backend: JSON-RPC framing and
// errors, version negotiation, every tool's arguments and results, the
// HTTP transport's pure rules and sessions. No daemon, no root.
#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <nlohmann/json.hpp>

#include "mcp/server.h"
#include "mcp/tools.h"

namespace wb::mcp {
namespace {

namespace asio = boost::asio;
using nlohmann::json;

class FakeBackend : public Backend {
 public:
  std::vector<std::string> created, killed;
  std::vector<CommandSpec> runs;
  std::map<std::string, std::string> files;
  bool missing_program = false;

  asio::awaitable<Result<std::string>> CreateSandbox(SandboxSpec spec) override {
    if (spec.image == "nope") co_return Fail(ErrorCode::kNotFound, "no image", "nope", "no such");
    std::string id = "sb" + std::to_string(created.size());
    created.push_back(id);
    co_return id;
  }
  asio::awaitable<Result<void>> KillSandbox(std::string id) override {
    killed.push_back(id);
    co_return Ok();
  }
  asio::awaitable<Result<std::vector<SandboxSummary>>> ListSandboxes() override {
    SandboxSummary s;
    s.id = "sb0";
    s.image = "base";
    s.state = "running";
    s.metadata["created_by"] = "mcp";
    co_return std::vector<SandboxSummary>{s};
  }
  asio::awaitable<Result<CommandResult>> Run(std::string id, CommandSpec cmd) override {
    if (id == "gone") co_return Fail(ErrorCode::kNotFound, "sandbox", id, "no such sandbox");
    runs.push_back(cmd);
    CommandResult r;
    if (missing_program) {
      r.exit_code = 127;
      r.not_started = true;
      r.stderr_data = "not found\n";
      co_return r;
    }
    r.stdout_data = "out:" + cmd.argv.back();
    r.stderr_data = "err";
    r.exit_code = 3;
    co_return r;
  }
  asio::awaitable<Result<std::string>> ReadFile(std::string, std::string path) override {
    auto it = files.find(path);
    if (it == files.end()) co_return Fail(ErrorCode::kNotFound, "read", path, "no such file");
    co_return it->second;
  }
  asio::awaitable<Result<void>> WriteFile(std::string, std::string path,
                                          std::string data) override {
    files[path] = data;
    co_return Ok();
  }
  asio::awaitable<Result<std::vector<FileEntry>>> ListFiles(std::string, std::string path,
                                                            uint32_t) override {
    co_return std::vector<FileEntry>{{path + "/a", "file", 3}, {path + "/d", "dir", 0}};
  }
};

class McpTest : public ::testing::Test {
 protected:
  // One message through the core; the reply parsed (null when none).
  json Send(const std::string& text) {
    auto fut = asio::co_spawn(io_, server_.Handle(text, session_), asio::use_future);
    io_.restart();
    io_.run();
    std::string reply = fut.get();
    if (reply.empty()) return nullptr;
    return json::parse(reply);
  }
  json Call(const std::string& tool, const json& args) {
    json m = {{"jsonrpc", "2.0"},
              {"id", 7},
              {"method", "tools/call"},
              {"params", {{"name", tool}, {"arguments", args}}}};
    json r = Send(m.dump());
    EXPECT_TRUE(r.contains("result")) << r.dump();
    return r.value("result", json());
  }
  static std::string FirstText(const json& result) {
    return result["content"][0].value("text", "");
  }

  asio::io_context io_;
  FakeBackend backend_;
  Server server_{backend_};
  std::shared_ptr<Session> session_ = std::make_shared<Session>();
};

TEST_F(McpTest, InitializeNegotiatesTheVersion) {
  json r = Send(
      R"({"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25",)"
      R"("capabilities":{},"clientInfo":{"name":"t","version":"1"}}})");
  EXPECT_EQ(r["id"], 1);
  EXPECT_EQ(r["result"]["protocolVersion"], "2025-11-25");
  EXPECT_TRUE(r["result"]["capabilities"].contains("tools"));
  EXPECT_EQ(r["result"]["serverInfo"]["name"], "warmbox");
  EXPECT_EQ(session_->protocol_version, "2025-11-25");
  // An older one we serve is kept; an unknown one gets our latest.
  r = Send(
      R"({"jsonrpc":"2.0","id":2,"method":"initialize","params":{"protocolVersion":"2024-11-05"}})");
  EXPECT_EQ(r["result"]["protocolVersion"], "2024-11-05");
  r = Send(
      R"({"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"1999-01-01"}})");
  EXPECT_EQ(r["result"]["protocolVersion"], kLatestProtocolVersion);
  // Without a version: invalid params.
  r = Send(R"({"jsonrpc":"2.0","id":4,"method":"initialize","params":{}})");
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  // The notification that follows gets no reply.
  EXPECT_TRUE(Send(R"({"jsonrpc":"2.0","method":"notifications/initialized"})").is_null());
  EXPECT_TRUE(session_->initialized);
}

TEST_F(McpTest, JsonRpcErrors) {
  json r = Send("{not json");
  EXPECT_EQ(r["error"]["code"], kParseError);
  EXPECT_TRUE(r["id"].is_null());
  EXPECT_EQ(Send("42")["error"]["code"], kInvalidRequest);
  EXPECT_EQ(Send("[]")["error"]["code"], kInvalidRequest);
  EXPECT_EQ(Send(R"({"jsonrpc":"1.0","id":1,"method":"ping"})")["error"]["code"], kInvalidRequest);
  EXPECT_EQ(Send(R"({"jsonrpc":"2.0","id":{},"method":"ping"})")["error"]["code"], kInvalidRequest);
  EXPECT_EQ(Send(R"({"jsonrpc":"2.0","id":1,"method":5})")["error"]["code"], kInvalidRequest);
  r = Send(R"({"jsonrpc":"2.0","id":"x","method":"resources/list"})");
  EXPECT_EQ(r["error"]["code"], kMethodNotFound);
  EXPECT_EQ(r["id"], "x");
  EXPECT_EQ(Send(R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]})")["error"]["code"],
            kInvalidParams);
  EXPECT_EQ(Send(R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}})")["error"]["code"],
            kInvalidParams);
  r = Send(R"({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"rm_rf"}})");
  EXPECT_EQ(r["error"]["code"], kInvalidParams);
  EXPECT_NE(r["error"]["message"].get<std::string>().find("rm_rf"), std::string::npos);
  // A client's response to us, and unknown notifications: no reply.
  EXPECT_TRUE(Send(R"({"jsonrpc":"2.0","id":1,"result":{}})").is_null());
  EXPECT_TRUE(
      Send(R"({"jsonrpc":"2.0","method":"notifications/cancelled","params":{}})").is_null());
}

TEST_F(McpTest, PingListAndBatch) {
  EXPECT_EQ(Send(R"({"jsonrpc":"2.0","id":1,"method":"ping"})")["result"], json::object());
  json r = Send(R"({"jsonrpc":"2.0","id":1,"method":"tools/list"})");
  std::set<std::string> names;
  for (const auto& t : r["result"]["tools"]) {
    names.insert(t["name"]);
    EXPECT_EQ(t["inputSchema"]["type"], "object") << t["name"];
    EXPECT_FALSE(t["description"].get<std::string>().empty());
  }
  EXPECT_EQ(names,
            (std::set<std::string>{"run_code", "run_command", "create_sandbox", "kill_sandbox",
                                   "list_sandboxes", "read_file", "write_file", "list_files"}));
  r = Send(R"([{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"},)"
           R"({"jsonrpc":"2.0","id":2,"method":"nope"}])");
  ASSERT_TRUE(r.is_array());
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1]["error"]["code"], kMethodNotFound);
}

TEST_F(McpTest, RunCodeInAFreshSandboxIsKilledAfter) {
  json r = Call("run_code", {{"language", "python"}, {"code", "print(1)"}});
  EXPECT_EQ(r["isError"], false);
  EXPECT_EQ(r["structuredContent"]["exit_code"], 3);
  EXPECT_EQ(r["structuredContent"]["stdout"], "out:print(1)");
  EXPECT_EQ(r["structuredContent"]["stderr"], "err");
  EXPECT_FALSE(r["structuredContent"].contains("sandbox_id"));
  EXPECT_NE(FirstText(r).find("exit_code: 3"), std::string::npos);
  ASSERT_EQ(backend_.runs.size(), 1u);
  EXPECT_EQ(backend_.runs[0].argv, (std::vector<std::string>{"python3", "-c", "print(1)"}));
  EXPECT_EQ(backend_.runs[0].timeout_ms, 60000u);
  EXPECT_EQ(backend_.created, std::vector<std::string>{"sb0"});
  EXPECT_EQ(backend_.killed, std::vector<std::string>{"sb0"});
  // keep_sandbox: the id comes back and it lives on.
  r = Call("run_code", {{"language", "bash"}, {"code", "x"}, {"keep_sandbox", true}});
  EXPECT_EQ(r["structuredContent"]["sandbox_id"], "sb1");
  EXPECT_EQ(backend_.killed.size(), 1u);
  // A sandbox named is used, never killed.
  r = Call("run_code", {{"language", "javascript"}, {"code", "1"}, {"sandbox_id", "mine"}});
  EXPECT_EQ(backend_.runs.back().argv[0], "node");
  EXPECT_EQ(backend_.created.size(), 2u);
  EXPECT_EQ(backend_.killed.size(), 1u);
}

TEST_F(McpTest, ToolErrorsAreResultsAModelCanActOn) {
  json r = Call("run_code", {{"language", "cobol"}, {"code", "x"}});
  EXPECT_EQ(r["isError"], true);
  EXPECT_NE(FirstText(r).find("python, javascript, bash"), std::string::npos) << FirstText(r);
  r = Call("run_code", {{"language", "python"}});
  EXPECT_EQ(r["isError"], true);
  EXPECT_NE(FirstText(r).find("'code' is required"), std::string::npos) << FirstText(r);
  r = Call("run_code", {{"language", "python"}, {"code", "x"}, {"timeout_seconds", "soon"}});
  EXPECT_NE(FirstText(r).find("'timeout_seconds' must be an integer"), std::string::npos);
  r = Call("run_command", {{"command", "ls"}, {"bogus", 1}});
  EXPECT_NE(FirstText(r).find("'bogus' is not an argument of run_command"), std::string::npos);
  r = Call("read_file", {{"sandbox_id", "s"}, {"path", "rel.txt"}});
  EXPECT_NE(FirstText(r).find("absolute path"), std::string::npos);
  r = Call("run_command", {{"command", "ls"}, {"sandbox_id", "gone"}});
  EXPECT_EQ(r["isError"], true);
  r = Call("create_sandbox", {{"image", "nope"}});
  EXPECT_EQ(r["isError"], true);
  EXPECT_NE(FirstText(r).find("create_sandbox failed"), std::string::npos);
  // A runtime the image lacks.
  backend_.missing_program = true;
  r = Call("run_code", {{"language", "javascript"}, {"code", "1"}, {"sandbox_id", "s"}});
  EXPECT_EQ(r["isError"], true);
  EXPECT_NE(FirstText(r).find("node is not installed"), std::string::npos) << FirstText(r);
}

TEST_F(McpTest, CommandsAndSandboxes) {
  json r = Call("run_command", {{"command", "echo hi | wc -c"},
                                {"sandbox_id", "s"},
                                {"env", {{"A", "1"}}},
                                {"cwd", "/tmp"},
                                {"timeout_seconds", 5}});
  EXPECT_EQ(r["isError"], false);
  EXPECT_EQ(backend_.runs.back().argv,
            (std::vector<std::string>{"/bin/sh", "-c", "echo hi | wc -c"}));
  EXPECT_EQ(backend_.runs.back().env, std::vector<std::string>{"A=1"});
  EXPECT_EQ(backend_.runs.back().cwd, "/tmp");
  EXPECT_EQ(backend_.runs.back().timeout_ms, 5000u);
  r = Call("create_sandbox", json::object());
  EXPECT_EQ(r["structuredContent"]["sandbox_id"], "sb0");
  EXPECT_EQ(r["structuredContent"]["image"], "base");
  r = Call("list_sandboxes", json::object());
  EXPECT_EQ(r["structuredContent"]["sandboxes"][0]["metadata"]["created_by"], "mcp");
  r = Call("kill_sandbox", {{"sandbox_id", "sb0"}});
  EXPECT_EQ(r["isError"], false);
  EXPECT_EQ(backend_.killed.back(), "sb0");
}

TEST_F(McpTest, FilesTextImagesAndBinary) {
  json r = Call("write_file", {{"sandbox_id", "s"}, {"path", "/t.txt"}, {"content", "héllo"}});
  EXPECT_EQ(r["isError"], false);
  r = Call("read_file", {{"sandbox_id", "s"}, {"path", "/t.txt"}});
  EXPECT_EQ(r["content"][0]["type"], "text");
  EXPECT_EQ(r["content"][0]["text"], "héllo");
  // "\x89PNG\r\n\x1a\n" + 4 bytes, base64.
  r = Call("write_file", {{"sandbox_id", "s"},
                          {"path", "/p.png"},
                          {"content", "iVBORw0KGgoAAAAA"},
                          {"encoding", "base64"}});
  EXPECT_EQ(r["isError"], false) << r.dump();
  r = Call("read_file", {{"sandbox_id", "s"}, {"path", "/p.png"}});
  EXPECT_EQ(r["content"][0]["type"], "image");
  EXPECT_EQ(r["content"][0]["mimeType"], "image/png");
  EXPECT_EQ(r["content"][0]["data"], "iVBORw0KGgoAAAAA");
  backend_.files["/b"] = std::string("\xff\xfe\x00\x01", 4);
  r = Call("read_file", {{"sandbox_id", "s"}, {"path", "/b"}});
  EXPECT_EQ(r["content"][0]["type"], "resource");
  EXPECT_EQ(r["content"][0]["resource"]["blob"], "//4AAQ==");
  r = Call("read_file", {{"sandbox_id", "s"}, {"path", "/missing"}});
  EXPECT_EQ(r["isError"], true);
  r = Call("list_files", {{"sandbox_id", "s"}, {"path", "/w"}, {"depth", 2}});
  EXPECT_EQ(r["structuredContent"]["entries"].size(), 2u);
  EXPECT_NE(FirstText(r).find("file\t/w/a\t3 bytes"), std::string::npos);
  r = Call("list_files", {{"sandbox_id", "s"}, {"path", "/w"}, {"depth", 0}});
  EXPECT_EQ(r["isError"], true);
}

TEST(McpPure, ImageMimeAndUtf8) {
  EXPECT_EQ(ImageMime(std::string("\x89PNG\r\n\x1a\nxxxx", 12)), "image/png");
  EXPECT_EQ(ImageMime("\xff\xd8\xff\xe0"), "image/jpeg");
  EXPECT_EQ(ImageMime("GIF89a..."), "image/gif");
  EXPECT_EQ(ImageMime("RIFF\x10\x00\x00\x00WEBPVP8 "), "");  // NUL cuts the literal
  EXPECT_EQ(ImageMime(std::string("RIFF\x10\x00\x00\x00WEBPVP8 ", 16)), "image/webp");
  EXPECT_EQ(ImageMime("hello"), "");
  EXPECT_TRUE(IsUtf8("plain é ✓ 😀"));
  EXPECT_FALSE(IsUtf8("\xff"));
  EXPECT_FALSE(IsUtf8("\xc3"));          // cut short
  EXPECT_FALSE(IsUtf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(IsUtf8("\xed\xa0\x80"));  // a surrogate
}

// The code interpreter's NDJSON events as run_code's result (LiveBackend).
TEST(McpPure, InterpreterEventsBecomeACodeResult) {
  CodeResult r;
  for (
      const char* line :
      {R"({"type":"number_of_executions","execution_count":1})",
       R"({"type":"stdout","text":"hello\n","timestamp":"x"})",
       R"({"type":"stderr","text":"warn\n"})", R"({"type":"keepalive"})",
       R"({"type":"result","is_main_result":true,"text":"2","png":"iVBORw0KGgo=","json":{"a":1}})",
       "not json at all",
       R"({"type":"error","name":"ZeroDivisionError","value":"division by zero","traceback":"tb"})",
       R"({"type":"end_of_execution"})"}) {
    AddInterpreterEvent(line, r);
  }
  EXPECT_EQ(r.command.stdout_data, "hello\n");
  EXPECT_EQ(r.command.stderr_data, "warn\nZeroDivisionError: division by zero\ntb");
  EXPECT_EQ(r.command.exit_code, 1);
  ASSERT_EQ(r.outputs.size(), 3u);
  EXPECT_EQ(r.outputs[0].mime, "image/png");
  EXPECT_EQ(r.outputs[0].data, "iVBORw0KGgo=");
  EXPECT_EQ(r.outputs[1].mime, "text/plain");
  EXPECT_EQ(r.outputs[1].data, "2");
  EXPECT_EQ(r.outputs[2].mime, "application/json");
  EXPECT_EQ(r.outputs[2].data, R"({"a":1})");
  // Streams stay within kMaxOutput.
  CodeResult big;
  const std::string chunk =
      nlohmann::json{{"type", "stdout"}, {"text", std::string(700000, 'x')}}.dump();
  AddInterpreterEvent(chunk, big);
  AddInterpreterEvent(chunk, big);
  EXPECT_EQ(big.command.stdout_data.size(), kMaxOutput);
  EXPECT_TRUE(big.command.stdout_truncated);
}

TEST(McpPure, ReplyFormatAndSessions) {
  EXPECT_EQ(ChooseReplyFormat(std::nullopt), ReplyFormat::kJson);
  EXPECT_EQ(ChooseReplyFormat("application/json, text/event-stream"), ReplyFormat::kJson);
  EXPECT_EQ(ChooseReplyFormat("text/event-stream"), ReplyFormat::kSse);
  EXPECT_EQ(ChooseReplyFormat("*/*"), ReplyFormat::kJson);
  EXPECT_EQ(ChooseReplyFormat("text/html"), ReplyFormat::kNone);
  EXPECT_EQ(SseEvent("{}"), "event: message\ndata: {}\n\n");
  EXPECT_TRUE(IsSupportedVersion("2025-06-18"));
  EXPECT_FALSE(IsSupportedVersion("2025-06-19"));

  SessionTable t;
  auto now = SessionTable::Clock::now();
  auto a = t.Create(now);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->first.size(), 32u);
  EXPECT_EQ(t.Find(a->first, now), a->second);
  EXPECT_EQ(t.Find("nope", now), nullptr);
  EXPECT_TRUE(t.Remove(a->first));
  EXPECT_FALSE(t.Remove(a->first));
  auto b = t.Create(now);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(t.Find(b->first, now + SessionTable::kSessionIdle + std::chrono::seconds(1)), nullptr);
  for (size_t i = 0; i < SessionTable::kMaxSessions + 5; ++i) ASSERT_TRUE(t.Create(now).ok());
  EXPECT_EQ(t.size(), SessionTable::kMaxSessions);
}

TEST(McpPure, InspectMessages) {
  EXPECT_TRUE(Inspect(R"({"jsonrpc":"2.0","id":1,"method":"initialize"})").initialize);
  EXPECT_FALSE(Inspect(R"({"jsonrpc":"2.0","method":"initialize"})").initialize);
  EXPECT_FALSE(Inspect(R"({"jsonrpc":"2.0","method":"notifications/initialized"})").has_request);
  EXPECT_TRUE(Inspect(R"([{"jsonrpc":"2.0","id":1,"method":"ping"}])").has_request);
  EXPECT_FALSE(Inspect("{").valid);
  EXPECT_FALSE(Inspect("[]").valid);
}

}  // namespace
}  // namespace wb::mcp
