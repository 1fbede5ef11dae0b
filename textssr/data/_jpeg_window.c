/* Decode only a window of a JPEG with libjpeg(-turbo)'s scanline cropping and skipping.
 *
 * decode_window(data, x0, y0, x1, y1) -> (bytes, xoffset, yoffset, width, height) | None
 *
 * The window is first clamped to the image. Rows [yoffset, yoffset + height) = [y0, y1) of the image,
 * columns [xoffset, xoffset + width) with xoffset <= x0 and xoffset + width >= x1 (libjpeg widens the
 * columns to whole iMCUs), as uint8 BGR, row-major, width * 3 bytes a row. Rows above y0 are
 * entropy-decoded and skipped (no IDCT, no colour conversion), rows below y1 are never read, columns
 * outside the widened range get no IDCT. The pixels at the edges of a cropped window may differ from a
 * full decode (fancy upsampling replicates the edge instead of reading the neighbour): callers ask for a
 * margin around what they need. Same decoder settings as a full
 * decode by Pillow, OpenCV or simplejpeg (integer IDCT, fancy upsampling). None for a colour space that
 * does not convert to BGR (CMYK, YCCK) and for a stream libjpeg had to repair (a warning: corrupt data): the
 * caller decodes those whole, as other decoders would. ValueError for a stream libjpeg rejects or a window
 * that does not meet the image.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

#if !defined(JCS_EXTENSIONS) || !defined(LIBJPEG_TURBO_VERSION_NUMBER) || LIBJPEG_TURBO_VERSION_NUMBER < 2001000
/* 2.1 is where progressive block smoothing became what the decoders of whole images (3.x) do */
#error "libjpeg-turbo >= 2.1 (JCS_EXT_BGR, jpeg_crop_scanline, jpeg_skip_scanlines) is required"
#endif

struct window_error {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void on_error(j_common_ptr cinfo)
{
    struct window_error *err = (struct window_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void on_message(j_common_ptr cinfo) { (void)cinfo; }

static PyObject *decode_window(PyObject *self, PyObject *args)
{
    Py_buffer data;
    int x0, y0, x1, y1;
    struct jpeg_decompress_struct cinfo;
    struct window_error err;
    PyObject *volatile out = NULL;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*iiii", &data, &x0, &y0, &x1, &y1))
        return NULL;
    memset(&cinfo, 0, sizeof cinfo); /* jpeg_destroy_decompress is a no-op on a struct create never filled */
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = on_error;
    err.pub.output_message = on_message;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        Py_XDECREF(out);
        PyErr_Format(PyExc_ValueError, "JPEG: %s", err.message);
        return NULL;
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, (const unsigned char *)data.buf, (unsigned long)data.len);
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        Py_RETURN_NONE;
    }
    cinfo.out_color_space = JCS_EXT_BGR;
    cinfo.dct_method = JDCT_ISLOW;
    cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&cinfo);
    if (x0 < 0)
        x0 = 0;
    if (y0 < 0)
        y0 = 0;
    if ((long long)x1 > (long long)cinfo.output_width)
        x1 = (int)cinfo.output_width;
    if ((long long)y1 > (long long)cinfo.output_height)
        y1 = (int)cinfo.output_height;
    if (x1 <= x0 || y1 <= y0) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "window (%d, %d, %d, %d) does not meet the %ux%u image", x0, y0,
                            x1, y1, cinfo.output_width, cinfo.output_height);
    }
    JDIMENSION xoffset = (JDIMENSION)x0, width = (JDIMENSION)(x1 - x0);
    if (width < cinfo.output_width)
        jpeg_crop_scanline(&cinfo, &xoffset, &width);
    if (y0 > 0)
        jpeg_skip_scanlines(&cinfo, (JDIMENSION)y0);
    size_t stride = (size_t)width * 3;
    if ((size_t)(y1 - y0) > (size_t)PY_SSIZE_T_MAX / stride) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        return PyErr_NoMemory();
    }
    out = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(stride * (size_t)(y1 - y0)));
    if (out == NULL) {
        jpeg_destroy_decompress(&cinfo);
        PyBuffer_Release(&data);
        return NULL;
    }
    JSAMPLE *base = (JSAMPLE *)PyBytes_AS_STRING(out);
    for (int row = 0; row < y1 - y0; row++) {
        JSAMPROW line = base + stride * (size_t)row;
        if (jpeg_read_scanlines(&cinfo, &line, 1) != 1) { /* data ran out: libjpeg pads, never short */
            jpeg_destroy_decompress(&cinfo);
            PyBuffer_Release(&data);
            Py_DECREF(out);
            return PyErr_Format(PyExc_ValueError, "JPEG: no scanline %d", y0 + row);
        }
    }
    long warnings = cinfo.err->num_warnings;
    jpeg_destroy_decompress(&cinfo); /* rows below y1 are never decoded */
    PyBuffer_Release(&data);
    if (warnings > 0) { /* repaired corrupt data: how a decoder repairs is its own; decode it whole */
        Py_DECREF(out);
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NIIII)", out, (unsigned int)xoffset, (unsigned int)y0, (unsigned int)width,
                         (unsigned int)(y1 - y0));
}

static PyMethodDef methods[] = {
    {"decode_window", decode_window, METH_VARARGS,
     "decode_window(data, x0, y0, x1, y1) -> (bytes, xoffset, yoffset, width, height) or None: the window "
     "(clamped to the image, columns widened to whole iMCUs) of a JPEG as BGR rows; None for CMYK/YCCK."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpeg_window", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__jpeg_window(void) { return PyModule_Create(&module); }
