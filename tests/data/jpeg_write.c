#include "jpeg_write.h"

#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf escape;
} error_trap;

static void escape(j_common_ptr j)
{
    longjmp(((error_trap *)j->err)->escape, 1);
}

int jpeg_write(const uint8_t *pixels, int h, int w, jpeg_pixels kind, const jpeg_options *o,
               unsigned char **out, unsigned long *size, char *err, size_t err_size)
{
    static const int components[] = {[JPEG_RGB] = 3, [JPEG_GRAY] = 1, [JPEG_CMYK] = 4};
    static const int factors[][2] = {
        [JPEG_444] = {1, 1}, [JPEG_422] = {2, 1}, [JPEG_420] = {2, 2}, [JPEG_440] = {1, 2}};
    struct jpeg_compress_struct j;
    error_trap trap;
    j.err = jpeg_std_error(&trap.mgr);
    trap.mgr.error_exit = escape;
    *out = NULL;
    *size = 0;
    if (setjmp(trap.escape)) {
        char text[JMSG_LENGTH_MAX];
        trap.mgr.format_message((j_common_ptr)&j, text);
        snprintf(err, err_size, "libjpeg: %s", text);
        jpeg_destroy_compress(&j);
        free(*out);
        *out = NULL;
        return -1;
    }
    jpeg_create_compress(&j);
    jpeg_mem_dest(&j, out, size);
    j.image_width = (JDIMENSION)w;
    j.image_height = (JDIMENSION)h;
    j.input_components = components[kind];
    j.in_color_space = kind == JPEG_RGB ? JCS_RGB : kind == JPEG_GRAY ? JCS_GRAYSCALE : JCS_CMYK;
    jpeg_set_defaults(&j);
    if (kind == JPEG_CMYK)
        jpeg_set_colorspace(&j, JCS_YCCK); // with the Adobe marker, as photo editors write it
    jpeg_set_quality(&j, o->quality, TRUE);
    // Subsampling sets the first component's factors (and CMYK's K's); the others stay 1 x 1.
    for (int c = 0; kind != JPEG_GRAY && c < components[kind]; c += 3) {
        j.comp_info[c].h_samp_factor = factors[o->subsampling][0];
        j.comp_info[c].v_samp_factor = factors[o->subsampling][1];
    }
    if (o->progressive)
        jpeg_simple_progression(&j);
    jpeg_start_compress(&j, TRUE);
    const size_t stride = (size_t)w * (size_t)components[kind];
    while (j.next_scanline < j.image_height) {
        JSAMPROW row = (JSAMPROW)(pixels + j.next_scanline * stride);
        jpeg_write_scanlines(&j, &row, 1);
    }
    jpeg_finish_compress(&j);
    jpeg_destroy_compress(&j);
    return 0;
}
