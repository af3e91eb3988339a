"""Pure array and DICOM/NIfTI functions: decoding, windowing, resizing, the demo cohort."""
