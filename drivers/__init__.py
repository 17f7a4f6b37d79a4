"""Serial device drivers, camera backends and their protocol-exact emulators.

Importing this package registers the drivers with :func:`cybloid.hardware.register_driver`:

=========  ==========================  ===========================================
role       driver                      device
=========  ==========================  ===========================================
steering   ``cbsp``                    beam-steering controller, CBSP/1 (PROTOCOL.md)
steering   ``nidaq``                   galvos / VCO-driven AODs on NI-DAQ analog outputs
steering   ``slm``                     holograms on a phase-only SLM (slmsuite)
laser      ``cobolt``                  Cobolt laser, ASCII commands
stage      ``proscan``                 Prior ProScan III stage controller
camera     ``opencv``                  USB camera / video via cv2.VideoCapture
camera     ``tiff``                    multi-page TIFF stack
camera     ``basler``                  Basler camera via pypylon (async, ring buffer)
camera     ``micromanager``            any Micro-Manager camera via pymmcore (async)
=========  ==========================  ===========================================

Serial drivers take ``port = "emulator"`` to run against their emulator (docs/drivers.md).
"""

from cybloid.hardware import register_driver

from .builders import build_basler_camera, build_micromanager_camera  # SDKs imported only when used
from .builders import build_laser, build_opencv_camera, build_stage, build_steering, build_tiff_camera

register_driver("steering", "cbsp", build_steering)
register_driver("steering", "nidaq", lambda o, c: __import__("cybloid.drivers.nidaq", fromlist=["x"]).build_nidaq_steering(o, c))
register_driver("steering", "slm", lambda o, c: __import__("cybloid.drivers.slm", fromlist=["x"]).build_slm_steering(o, c))
register_driver("laser", "cobolt", build_laser)
register_driver("stage", "proscan", build_stage)
register_driver("camera", "opencv", build_opencv_camera)
register_driver("camera", "tiff", build_tiff_camera)
register_driver("camera", "basler", build_basler_camera)
register_driver("camera", "micromanager", build_micromanager_camera)
