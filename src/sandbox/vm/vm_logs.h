// What a VM that failed to boot leaves for the error and for the operator:
// the tails of QEMU's stderr and of the guest's console, and the kept
// console logs of failed VMs (the newest few, in FailedLogsDir).
#pragma once

#include <string>

namespace wb::vm {

// The last bytes of a file, from the start of a line, trimmed.
std::string Tail(const std::string& path);
// "; qemu stderr: TAIL", or "" when QEMU said nothing.
std::string TailOf(const std::string& qemu_log);
// The guest's last words: up to the first kernel panic line (its stack
// dump says nothing about our setup), the last few lines.
std::string ConsoleTail(const std::string& path);
// Keeps the console log of a VM that failed, for the operator.
void KeepFailedLog(const std::string& state_dir, const std::string& id, const std::string& console);

}  // namespace wb::vm
