"""Small trained sample models shipped with deeptest-iot, and the scripts that trained them."""
