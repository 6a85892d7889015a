"""The sending pipeline's stages: accept, batch buffers, dispatch, settlement."""
