#pragma once
// Reading back what was drawn, for --screenshot (docs and the headless tests).
#include <filesystem>

namespace bitfsck::app {

// Reads the current framebuffer (width x height, RGB) with glReadPixels and writes it as a PNG,
// top row first. Throws bitfsck::Error naming the file when it cannot be written.
void write_framebuffer_png(const std::filesystem::path& out, int width, int height);

}  // namespace bitfsck::app
