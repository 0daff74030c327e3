// Tests reach the WAN stand-in through TestSupport, as before it moved into the product.
@_exported import LinkSimulator
@_exported import Spawn
