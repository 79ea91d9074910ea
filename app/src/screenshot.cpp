#include "bitfsck/app/screenshot.hpp"

#include <string>
#include <vector>

#define GL_GLEXT_PROTOTYPES
#include <GL/gl.h>
#include <stb_image_write.h>  // implementation in libstb (linked through pkg-config imgui)

#include "bitfsck/io/atomic_write.hpp"
#include "bitfsck/io/error.hpp"

namespace bitfsck::app {

void write_framebuffer_png(const std::filesystem::path& out, int width, int height) {
    std::vector<unsigned char> pixels(static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3);
    glFinish();
    glPixelStorei(GL_PACK_ALIGNMENT, 1);  // rows of width*3 bytes are not 4-aligned in general
    glReadBuffer(GL_BACK);
    glReadPixels(0, 0, width, height, GL_RGB, GL_UNSIGNED_BYTE, pixels.data());
    if (glGetError() != GL_NO_ERROR) throw io::FileError(out.string() + ": could not read the framebuffer");
    // OpenGL's first row is the bottom one; PNG's is the top.
    stbi_flip_vertically_on_write(1);
    // stb's deflate searches deeper at higher levels (default 8): docs screenshots stay small.
    stbi_write_png_compression_level = 16;
    std::string png;
    auto append = [](void* context, void* data, int size) { static_cast<std::string*>(context)->append(static_cast<const char*>(data), size); };
    if (!stbi_write_png_to_func(append, &png, width, height, 3, pixels.data(), width * 3))
        throw io::FileError(out.string() + ": could not encode the PNG");
    // Like every bitfsck output: never a half-written file under the final name.
    io::write_file_atomically(out, png);
}

}  // namespace bitfsck::app
