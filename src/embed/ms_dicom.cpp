/* ms_dicom.cpp: DICOM decoding through GDCM behind the C function ms_dicom_load (built only
 * with MS_HAVE_DICOM; otherwise ms_image.c reports "FILE: DICOM support not built").
 *
 * The pixel data are decoded by GDCM in any transfer syntax it supports (uncompressed, RLE,
 * JPEG baseline/lossless, JPEG-LS, JPEG 2000); a multi-frame image gives its first frame.
 * Gray images (MONOCHROME1/MONOCHROME2) become 8 bits as follows:
 *   1. stored values masked to BitsStored (sign-extended when PixelRepresentation is 1);
 *   2. modality values v = stored * RescaleSlope + RescaleIntercept (1 and 0 when absent);
 *   3. with a WindowCenter c / WindowWidth w (first values, w >= 1):
 *      y = clamp((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1) (the DICOM linear VOI function);
 *      otherwise y = (v - min) / (max - min) over the image (0 for a constant image);
 *   4. MONOCHROME1 (white = low values) is inverted: y = 1 - y;
 *   5. u8 = round(255 y).
 * RGB images with 8-bit samples (interleaved or planar) become c = 3. Other photometric
 * interpretations (PALETTE COLOR, YBR_*) and other sample layouts are MS_ERR_DATA naming
 * the file and the interpretation.
 */
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <gdcmImage.h>
#include <gdcmImageReader.h>
#include <gdcmPhotometricInterpretation.h>
#include <gdcmPixelFormat.h>
#include <gdcmTrace.h>

#include "embed/ms_embed_internal.h"

/* First value of a decimal-string element (e.g. "40\400"), or false when absent/unparsable. */
static bool first_ds(const gdcm::DataSet &ds, uint16_t group, uint16_t elem, double *out) {
    const gdcm::Tag tag(group, elem);
    if (!ds.FindDataElement(tag)) return false;
    const gdcm::DataElement &de = ds.GetDataElement(tag);
    const gdcm::ByteValue *bv = de.GetByteValue();
    if (!bv || bv->GetLength() == 0) return false;
    std::string s(bv->GetPointer(), bv->GetLength());
    char *end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || !std::isfinite(v)) return false;
    *out = v;
    return true;
}

template <typename T> static void to_double(const char *buf, size_t n, std::vector<double> &v) {
    for (size_t i = 0; i < n; i++) {
        T x;
        std::memcpy(&x, buf + i * sizeof(T), sizeof(T));
        v[i] = (double)x;
    }
}

extern "C" ms_status ms_dicom_load(ms_image *im, const char *path) {
    try {
        /* library code prints nothing: GDCM's diagnostics become our one-line errors */
        gdcm::Trace::SetWarning(false);
        gdcm::Trace::SetError(false);
        gdcm::Trace::SetDebug(false);
        gdcm::ImageReader reader;
        reader.SetFileName(path);
        if (!reader.Read()) return ms_fail(MS_ERR_DATA, "%s: not a readable DICOM image", path);
        const gdcm::Image &img = reader.GetImage();
        const unsigned int *dims = img.GetDimensions();
        const unsigned long w = dims[0], h = dims[1];
        if (w < 1 || h < 1 || (double)w * (double)h > (double)(1u << 28))
            return ms_fail(MS_ERR_DATA, "%s: DICOM image size %lux%lu not supported", path, w, h);
        const gdcm::PixelFormat pf = img.GetPixelFormat();
        const gdcm::PhotometricInterpretation pi = img.GetPhotometricInterpretation();
        const size_t len = img.GetBufferLength();
        std::vector<char> buf(len);
        if (!img.GetBuffer(buf.data()))
            return ms_fail(MS_ERR_DATA, "%s: cannot decode the DICOM pixel data (transfer syntax %s)", path,
                           gdcm::TransferSyntax::GetTSString(img.GetTransferSyntax()));
        const size_t npx = (size_t)w * h;
        if (pi == gdcm::PhotometricInterpretation::RGB) {
            if (pf.GetSamplesPerPixel() != 3 || pf.GetBitsAllocated() != 8 || len < 3 * npx)
                return ms_fail(MS_ERR_DATA, "%s: RGB DICOM needs 3 samples of 8 bits", path);
            ms_image_reserve(im, (int)w, (int)h, 3);
            const unsigned char *p = (const unsigned char *)buf.data();
            if (img.GetPlanarConfiguration() == 0)
                std::memcpy(im->px, p, 3 * npx);
            else
                for (size_t i = 0; i < npx; i++)
                    for (int c = 0; c < 3; c++) im->px[3 * i + c] = p[c * npx + i];
            return MS_OK;
        }
        const bool mono1 = pi == gdcm::PhotometricInterpretation::MONOCHROME1;
        if (!mono1 && pi != gdcm::PhotometricInterpretation::MONOCHROME2)
            return ms_fail(MS_ERR_DATA, "%s: DICOM photometric interpretation %s not supported", path,
                           gdcm::PhotometricInterpretation::GetPIString(pi));
        if (pf.GetSamplesPerPixel() != 1) return ms_fail(MS_ERR_DATA, "%s: gray DICOM with several samples", path);
        std::vector<double> v(npx);
        const unsigned bits = pf.GetBitsStored();
        switch (pf.GetScalarType()) {
        case gdcm::PixelFormat::UINT8: to_double<uint8_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::INT8: to_double<int8_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::UINT16: to_double<uint16_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::INT16: to_double<int16_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::UINT32: to_double<uint32_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::INT32: to_double<int32_t>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::FLOAT32: to_double<float>(buf.data(), npx, v); break;
        case gdcm::PixelFormat::FLOAT64: to_double<double>(buf.data(), npx, v); break;
        default: return ms_fail(MS_ERR_DATA, "%s: DICOM pixel format not supported", path);
        }
        if (len < npx * pf.GetPixelSize()) return ms_fail(MS_ERR_DATA, "%s: DICOM pixel data too short", path);
        /* step 1: keep BitsStored bits of integer samples */
        const unsigned alloc = pf.GetBitsAllocated();
        if (bits > 0 && bits < alloc && alloc <= 32 && pf.GetScalarType() != gdcm::PixelFormat::FLOAT32 &&
            pf.GetScalarType() != gdcm::PixelFormat::FLOAT64) {
            const double range = std::ldexp(1.0, (int)bits);
            for (double &x : v) {
                double m = std::fmod(x, range);
                if (m < 0) m += range;
                if (pf.GetPixelRepresentation() == 1 && m >= range / 2) m -= range;
                x = m;
            }
        }
        /* step 2: modality LUT */
        const double slope = img.GetSlope(), intercept = img.GetIntercept();
        for (double &x : v) x = x * slope + intercept;
        /* steps 3-5 */
        const gdcm::DataSet &ds = reader.GetFile().GetDataSet();
        double c, ww;
        const bool window = first_ds(ds, 0x0028, 0x1050, &c) && first_ds(ds, 0x0028, 0x1051, &ww) && ww >= 1.0;
        double lo = 0, span = 1;
        if (!window) {
            auto mm = std::minmax_element(v.begin(), v.end());
            lo = *mm.first;
            span = *mm.second - *mm.first;
        }
        ms_image_reserve(im, (int)w, (int)h, 1);
        for (size_t i = 0; i < npx; i++) {
            double y;
            if (window)
                y = (v[i] - (c - 0.5)) / (ww - 1.0) + 0.5;
            else
                y = span > 0 ? (v[i] - lo) / span : 0.0;
            y = y < 0 ? 0 : y > 1 ? 1 : y;
            if (mono1) y = 1.0 - y;
            im->px[i] = (uint8_t)std::floor(255.0 * y + 0.5);
        }
        return MS_OK;
    } catch (const std::exception &e) {
        return ms_fail(MS_ERR_DATA, "%s: DICOM decoding failed: %s", path, e.what());
    } catch (...) {
        return ms_fail(MS_ERR_DATA, "%s: DICOM decoding failed", path);
    }
}
