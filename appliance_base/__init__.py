"""What every package of the appliance shares and that imports none of them: errors shown to people,
the configuration, the database handle and column types. netpolicy/ and vmimages/ sit on this."""
