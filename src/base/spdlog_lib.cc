// spdlog's implementation, compiled once for every host binary.
//
// Debian ships spdlog as a shared library only, and warmbox links statically
// (the dynamic loader would cost `warmbox run` ~2 ms: CMakeLists.txt). In
// header-only mode every source that logs compiles all of spdlog again, about
// 12 s at -O2 each; with SPDLOG_COMPILED_LIB (set on wb_spdlog for all its
// users) the headers only declare, and this file defines, the implementation
// files ("-inl.h") of the parts we use plus the templates we instantiate.
#ifndef SPDLOG_COMPILED_LIB
#error "spdlog_lib.cc is built with SPDLOG_COMPILED_LIB (CMakeLists.txt, wb_spdlog)"
#endif

#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/console_globals.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

#include <mutex>

namespace spdlog {
template class sinks::base_sink<std::mutex>;
template class sinks::base_sink<details::null_mutex>;
// The registry's default logger writes to a colour stdout sink.
template class sinks::ansicolor_sink<details::console_mutex>;
template class sinks::ansicolor_stdout_sink<details::console_mutex>;
template class sinks::ansicolor_stderr_sink<details::console_mutex>;
// InitLogging (log.cc) and the VM snapshot bench log to stderr.
template class sinks::stdout_sink_base<details::console_mutex>;
template class sinks::stdout_sink<details::console_mutex>;
template class sinks::stderr_sink<details::console_mutex>;
template std::shared_ptr<logger> stderr_logger_mt<synchronous_factory>(const std::string&);
template std::shared_ptr<logger> stdout_logger_mt<synchronous_factory>(const std::string&);
}  // namespace spdlog
