"""Serial device drivers, camera backends and their protocol-exact emulators."""
